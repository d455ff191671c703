"""The speed benchmark (``python -m benchmarks.speed``) runs end to end at a tiny size: its code path, not its
timings."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_bench_runs_end_to_end_at_a_tiny_size():
    from benchmarks.speed import format_table, run

    result = run(quick=True, device="cpu", with_peers=False, echo=lambda s: None, rows=4096, tutorial_epochs=20,
                 repeats=1, memory=False)  # fmt: skip
    table = format_table(result)
    assert "### tutorial" in table and "### tabular mlp" in table and "### targets" in table
    assert "### processes (mlp)" in table  # 2 processes (torchrun, gloo) against 1
    assert "### streaming (mlp)" in table and "### predict (csv)" in table
    assert set(result["cases"]["tabular linear"]["rows"]) == {
        "DataLoader(TensorDataset)", "hand index-slicing loop", "torchwork", "torchwork + progress + checkpoints",
    }  # fmt: skip
    for case in result["cases"].values():
        assert all(value > 0 for value in case["rows"].values())
