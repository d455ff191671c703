"""The networks for tables: a linear model and an MLP, over numeric inputs and category codes.

:class:`TabularLinear` is a linear layer on numeric inputs plus, for each categorical input, an
``nn.Embedding(codes, out_features)`` whose rows are exactly the weights one-hot columns would
get; code 0 ("unknown") is fixed at zero (``padding_idx``), so a category never seen in training
adds nothing. :meth:`TabularLinear.start_from` sets the weights from a closed-form fit on the
one-hot design (see ``Preprocessor.design``). :class:`MLP` embeds categories, and can carry a
linear skip path started from that fit. ``ACTIVATIONS`` names the activations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from torchwork.core.checks import Registry
from torchwork.core.errors import InputError
from torchwork.core.runtime import check_model_memory

MAX_WIDTH = 1 << 20  # units in one hidden layer: a million is already far more than a table's MLP needs


# ----------------------------------------------------------------------------- the linear model
class TabularLinear(nn.Module):
    """``y = x_numeric @ W + b + sum_j E_j[code_j]`` for ``in_features`` numeric inputs then one code per category."""

    def __init__(self, in_features: int, out_features: int = 1, categories: Sequence[int] = ()) -> None:
        super().__init__()
        self.n_numeric = int(in_features)
        self.linear = nn.Linear(self.n_numeric, out_features)
        self.categories = nn.ModuleList(nn.Embedding(int(c), out_features, padding_idx=0) for c in categories)
        for emb in self.embeddings():
            nn.init.zeros_(emb.weight)

    def embeddings(self) -> list[nn.Embedding]:
        return [m for m in self.categories if isinstance(m, nn.Embedding)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x[:, : self.n_numeric])
        for j, emb in enumerate(self.categories):
            out = out + emb(x[:, self.n_numeric + j].long())
        return out

    @torch.no_grad()
    def start_from(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        """Set the weights from a fit on the design matrix: ``coef`` (numeric + one-hot columns, outputs)."""
        coef = np.asarray(coef, dtype=np.float64).reshape(-1, self.linear.out_features)
        n = self.n_numeric
        self.linear.weight.copy_(torch.from_numpy(coef[:n].T.copy()))
        self.linear.bias.copy_(torch.from_numpy(np.asarray(intercept, dtype=np.float64).reshape(-1)))
        offset = n
        for emb in self.embeddings():
            rows = emb.num_embeddings - 1
            emb.weight[1:].copy_(torch.from_numpy(coef[offset : offset + rows]))
            emb.weight[0].zero_()
            offset += rows


# -------------------------------------------------------------------------------------- the MLP
ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
ACTIVATIONS.add("relu", nn.ReLU)
ACTIVATIONS.add("gelu", nn.GELU)
ACTIVATIONS.add("silu", nn.SiLU, aliases=("swish",))
ACTIVATIONS.add("tanh", nn.Tanh)
ACTIVATIONS.add("sigmoid", nn.Sigmoid)
ACTIVATIONS.add("leaky_relu", nn.LeakyReLU)
ACTIVATIONS.add("elu", nn.ELU)


def embedding_size(codes: int) -> int:
    """Width of a category's embedding: fastai's rule ``1.6 * codes ** 0.56``, at most 32."""
    return max(1, min(32, round(1.6 * codes**0.56)))


def check_hidden(hidden: Sequence[int], where: str) -> list[int]:
    """The MLP's hidden sizes: at least one, each from 1 to :data:`MAX_WIDTH` (the one rule: the
    configuration checks ``--hidden`` with it before any data is read, and the MLP when built)."""
    sizes = [int(h) for h in hidden]
    if not sizes:
        raise InputError(f"{where} need at least one layer")
    for size in sizes:
        if not 1 <= size <= MAX_WIDTH:
            raise InputError(f"{where} must be >= 1 and at most {MAX_WIDTH:,} units per layer, got {size}")
    return sizes


class MLP(nn.Module):
    """A multilayer perceptron: ``in -> hidden[0] -> ... -> out`` with an activation and dropout.

    ``categories`` (codes per categorical input) makes the last ``len(categories)`` inputs
    category codes, each looked up in a learned embedding (:func:`embedding_size`; code 0,
    "unknown", is fixed at zero). ``skip=True`` adds a linear path from the inputs to the
    output (:class:`~torchwork.models.linear.TabularLinear`): :meth:`start_from` sets it from
    a closed-form fit and zeroes the last layer, so the network starts as that straight line
    and only has to learn what the line misses.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        categories: Sequence[int] = (),
        skip: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"mlp dropout must be in [0, 1), got {dropout}")
        check_hidden(hidden, "mlp hidden sizes")
        make_activation = ACTIVATIONS.get(activation)
        self.n_numeric = int(in_features)
        widths = [self.n_numeric + sum(embedding_size(int(c)) for c in categories), *map(int, hidden), out_features]
        parameters = sum(a * b + b for a, b in itertools.pairwise(widths))
        parameters += sum(int(c) * embedding_size(int(c)) for c in categories)
        if skip:
            parameters += (self.n_numeric + 1 + sum(int(c) for c in categories)) * out_features
        check_model_memory(f"hidden sizes {','.join(map(str, hidden))}", parameters)  # before allocating
        if categories:
            self.embeddings = nn.ModuleList(
                nn.Embedding(int(c), embedding_size(int(c)), padding_idx=0) for c in categories
            )
        layers: list[nn.Module] = []
        width = self.n_numeric + sum(embedding_size(int(c)) for c in categories)
        for size in hidden:
            layers += [nn.Linear(width, int(size)), make_activation()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)
        if skip:
            self.skip = TabularLinear(self.n_numeric, out_features, categories)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "embeddings"):
            codes = x[:, self.n_numeric :].long()
            h = torch.cat([x[:, : self.n_numeric], *(emb(codes[:, j]) for j, emb in enumerate(self.embeddings))], 1)
        else:
            h = x
        out = self.net(h)
        if hasattr(self, "skip"):
            out = out + self.skip(x)
        return out

    @torch.no_grad()
    def start_from(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        """Start as the straight line ``coef``/``intercept`` (needs ``skip=True``): the last layer is zeroed."""
        self.skip.start_from(coef, intercept)
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
