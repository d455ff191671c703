"""The checkpoint writer's shortcuts give what the plain path gives."""

from __future__ import annotations

import torch

from torchwork.files.checkpoint import HistoryTable, _history_columns, checkpoint_bytes, load_checkpoint


def _row(epoch, val=True):
    row = {"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 0.01, "seconds": 0.001 * epoch}
    if val:
        row["val_loss"] = 2.0 / epoch
    return row


def _same(a, b):
    x, y = a["values"], b["values"]
    nans_agree = x.shape == y.shape and bool((x.isnan() == y.isnan()).all())
    return a["columns"] == b["columns"] and nans_agree and x.nan_to_num().equal(y.nan_to_num())


def test_the_history_table_grows_as_a_fresh_conversion_would():
    table, rows = HistoryTable(), []
    for epoch in range(1, 40):
        rows.append(_row(epoch, val=epoch > 3))  # validation from epoch 4: a column appears
        if epoch % 3 == 0:
            assert _same(table(list(rows)), _history_columns(rows))
    resumed = [dict(r) for r in rows[:10]]  # a resumed fit: other row objects, fewer rows
    assert _same(table(resumed), _history_columns(resumed))
    resumed.append(_row(11))
    assert _same(table(resumed), _history_columns(resumed))


def test_checkpoints_round_trip_through_both_safetensors_writers(tmp_path):
    for dtype in (torch.float32, torch.bfloat16):  # NumPy's writer; torch's (NumPy has no bfloat16)
        weights = torch.arange(6, dtype=torch.float32).reshape(2, 3).to(dtype)
        state = {"model": {"w": weights, "mask": torch.tensor([True, False])}, "fit": {"epoch": 3},
                 "history": [_row(1), _row(2)]}  # fmt: skip
        path = tmp_path / f"{dtype}.safetensors"
        path.write_bytes(checkpoint_bytes(state, {"note": "x"}))
        loaded, extra = load_checkpoint_unchecked(path)
        assert loaded["model"]["w"].dtype == dtype and torch.equal(loaded["model"]["w"], weights)
        assert torch.equal(loaded["model"]["mask"], state["model"]["mask"])
        assert loaded["history"] == state["history"] and extra == {"note": "x"}


def load_checkpoint_unchecked(path):
    """load_checkpoint, minus its check that the state is a whole fit's (this one is not)."""
    import torchwork.files.checkpoint as checkpoint

    real = checkpoint._check_tree
    checkpoint._check_tree = lambda state, extra: None
    try:
        return load_checkpoint(path)
    finally:
        checkpoint._check_tree = real
