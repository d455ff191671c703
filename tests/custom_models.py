"""A user's own model class, importable as tests.custom_models:TinyNet."""

from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_features: int, out_features: int = 1, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, x):
        return self.body(x)
