"""The tutorial's two linear models: two ``nn.Parameter``s, then one ``nn.Linear`` layer."""

from __future__ import annotations

import torch
from torch import nn


class LinearRegressionModel(nn.Module):
    """The tutorial's model: ``y = weights * x + bias`` from two ``nn.Parameter``s."""

    def __init__(self) -> None:
        super().__init__()
        # Start from random values; gradient descent adjusts them.
        self.weights = nn.Parameter(torch.randn(1, dtype=torch.float), requires_grad=True)
        self.bias = nn.Parameter(torch.randn(1, dtype=torch.float), requires_grad=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights * x + self.bias


class LinearRegressionModelV2(nn.Module):
    """The tutorial's section 6 model: one ``nn.Linear(1, 1)`` layer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear_layer = nn.Linear(in_features=1, out_features=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_layer(x)
