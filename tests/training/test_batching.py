"""Batches by index: every row once per epoch, the documented order, shards that fit together."""

from __future__ import annotations

import torch

from tests.support import documented_order
from torchwork.training import batching
from torchwork.training.batching import TensorBatches, epoch_permutation


def test_each_epoch_is_a_permutation_of_its_own():
    a, b = epoch_permutation(1000, 7, 0), epoch_permutation(1000, 7, 1)
    assert sorted(a.tolist()) == list(range(1000)) and not torch.equal(a, b)
    assert torch.equal(a, epoch_permutation(1000, 7, 0))  # a function of (seed, epoch) only
    assert not torch.equal(a, epoch_permutation(1000, 8, 0))
    assert torch.equal(a, documented_order(1000, 7, 0))  # the recipe the README documents


def test_batches_follow_the_permutation_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(batching, "CHUNK_ROWS", 64)  # several chunks, a partial last one
    X = torch.arange(1000, dtype=torch.float32).unsqueeze(1)
    batches = TensorBatches(X, X * 2, batch_size=48, shuffle=True, seed=3)
    got = [xb.clone() for xb, _ in batches.epoch(5)]
    order = epoch_permutation(1000, 3, 5)
    assert torch.equal(torch.cat(got).squeeze(1).long(), order)
    assert [len(g) for g in got] == batches.batch_sizes() == [48] * 20 + [40]
    # From batch 7 on (a resumed epoch): the same batches as the full epoch's.
    resumed = [xb.clone() for xb, _ in batches.epoch(5, start=7)]
    assert all(torch.equal(r, g) for r, g in zip(resumed, got[7:], strict=True))


def test_full_batch_keeps_the_data_order_and_copies_nothing():
    X = torch.randn(40, 1)
    (xb, _), *rest = list(TensorBatches(X, X, batch_size=None).epoch(0))
    assert not rest and xb.data_ptr() == X.data_ptr()


def test_unshuffled_batches_are_views():
    X = torch.randn(100, 2)
    batches = list(TensorBatches(X, X, batch_size=30, shuffle=False).epoch(0))
    assert [b[0].data_ptr() for b in batches] == [X[i].data_ptr() for i in (0, 30, 60, 90)]


def test_ranks_share_an_epoch_without_overlap():
    X = torch.arange(103, dtype=torch.float32).unsqueeze(1)
    shards = [TensorBatches(X, X, batch_size=10, seed=1, rank=r, world_size=4) for r in range(4)]
    seen = [torch.cat([xb for xb, _ in s.epoch(2)]).squeeze(1).long() for s in shards]
    assert all(len(s) == 25 for s in seen)  # 103 // 4 rows each; the remainder is dropped
    together = torch.cat(seen)
    assert len(set(together.tolist())) == 100
    assert torch.equal(together.sort().values, epoch_permutation(103, 1, 2)[:100].sort().values)
