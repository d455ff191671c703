"""A multilayer perceptron, and the activations it can use by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from torchwork.core.errors import InputError
from torchwork.core.registry import Registry

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
ACTIVATIONS.add("relu", nn.ReLU)
ACTIVATIONS.add("gelu", nn.GELU)
ACTIVATIONS.add("silu", nn.SiLU, aliases=("swish",))
ACTIVATIONS.add("tanh", nn.Tanh)
ACTIVATIONS.add("sigmoid", nn.Sigmoid)
ACTIVATIONS.add("leaky_relu", nn.LeakyReLU)
ACTIVATIONS.add("elu", nn.ELU)


class MLP(nn.Module):
    """A multilayer perceptron: ``in -> hidden[0] -> ... -> out`` with an activation and dropout."""

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"mlp dropout must be in [0, 1), got {dropout}")
        if any(int(h) < 1 for h in hidden):
            raise InputError(f"mlp hidden sizes must be >= 1, got {list(hidden)}")
        make_activation = ACTIVATIONS.get(activation)
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, int(size)), make_activation()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
