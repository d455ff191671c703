"""A user's own model class, importable as tests.custom_models:TinyNet."""

from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_features: int, out_features: int = 1, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, x):
        return self.body(x)


class NaNAfter(nn.Module):
    """A linear model whose output turns to NaN after ``after`` training forward passes."""

    def __init__(self, in_features: int, out_features: int = 1, after: int = 10) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.after, self.calls = after, 0

    def forward(self, x):
        out = self.linear(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                return out * float("nan")
        return out
