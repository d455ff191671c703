"""A linear model over numeric inputs and category codes: the same as a linear layer on one-hot columns.

Each categorical input gets an ``nn.Embedding(codes, out_features)`` whose rows are exactly the
weights one-hot columns would get; code 0 ("unknown") is fixed at zero (``padding_idx``), so a
category never seen in training adds nothing. :meth:`TabularLinear.start_from` sets the weights
from a closed-form fit on the one-hot design (see ``Preprocessor.design``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


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
