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
    batches = TensorBatches((X, X * 2), batch_size=48, shuffle=True, seed=3)
    got = [xb.clone() for xb, _ in batches.epoch(5)]
    order = epoch_permutation(1000, 3, 5)
    assert torch.equal(torch.cat(got).squeeze(1).long(), order)
    assert [len(g) for g in got] == batches.batch_sizes() == [48] * 20 + [40]
    # From batch 7 on (a resumed epoch): the same batches as the full epoch's.
    resumed = [xb.clone() for xb, _ in batches.epoch(5, start=7)]
    assert all(torch.equal(r, g) for r, g in zip(resumed, got[7:], strict=True))


def test_full_batch_keeps_the_data_order_and_copies_nothing():
    X = torch.randn(40, 1)
    (xb, _), *rest = list(TensorBatches((X, X), batch_size=None).epoch(0))
    assert not rest and xb.data_ptr() == X.data_ptr()


def test_unshuffled_batches_are_views():
    X = torch.randn(100, 2)
    batches = list(TensorBatches((X, X), batch_size=30, shuffle=False).epoch(0))
    assert [b[0].data_ptr() for b in batches] == [X[i].data_ptr() for i in (0, 30, 60, 90)]


def test_ranks_share_each_global_batch_exactly():
    from torchwork.training.distributed import Group, ShardedBatches

    X = torch.arange(103, dtype=torch.float32).unsqueeze(1)
    shards = [ShardedBatches((X, X), 10, True, 1, Group(r, 4, r, "gloo")) for r in range(4)]
    perm = epoch_permutation(103, 1, 2)
    per_rank = [list(s.epoch(2)) for s in shards]
    assert all(len(b) == 3 for b in per_rank) and shards[0].global_sizes() == [40, 40, 23]
    for b, (lo, hi) in enumerate([(0, 40), (40, 80), (80, 103)]):
        rows = torch.cat([per_rank[r][b][0] for r in range(4)]).squeeze(1).long()
        assert sorted(rows.tolist()) == sorted(perm[lo:hi].tolist())  # every row once, none padded


def test_a_rank_without_rows_in_the_last_batch_weighs_zero():
    from torchwork.training.distributed import GlobalBatchLoss, Group, ShardedBatches

    class Alone(Group):  # rank 3 of 4, its sums computed as if the other ranks added nothing
        def all_sum(self, tensor):
            return tensor

    X = torch.arange(5, dtype=torch.float32).unsqueeze(1)
    shard = ShardedBatches((X, X), 1, False, 0, Alone(3, 4, 3, "gloo"))
    scale = GlobalBatchLoss(shard)
    seen = []
    for xb, yb in shard.epoch(0):
        xb = xb.clone().requires_grad_()
        value = scale((xb - yb + 1).abs().mean())
        value.backward()
        seen.append((xb.detach().item(), shard.real, value.item(), xb.grad.item()))
    # batch 1 is rows 0-3 (rank 3 takes row 3): its share is 1 x 4/4; the value is the (here partial) sum / 4.
    # batch 2 is row 4 alone (rank 0's): rank 3 computes on it with weight 0, so its gradient is 0
    assert seen == [(3.0, 1, 0.25, 1.0), (4.0, 0, 0.0, 0.0)]
