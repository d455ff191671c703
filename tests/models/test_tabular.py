"""The MLP's sizes are checked before anything is allocated: a limit per layer, and the memory
that training the whole network needs against the memory available (issue 18, item 5)."""

from __future__ import annotations

import time

import pytest

import torchwork.core.runtime as runtime
from torchwork.cli import main
from torchwork.core.errors import InputError
from torchwork.models.registry import build_model
from torchwork.models.tabular import MAX_WIDTH, MLP


def test_hidden_of_a_billion_is_refused_in_one_line_before_the_data_is_read(tmp_path, capsys):
    missing = tmp_path / "never-read.csv"
    assert main(["train", str(missing), "--target", "y", "--hidden", "1000000000"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "torchwork: error: --hidden: layer sizes must be >= 1 and at most 1,048,576 units per layer, got 1000000000\n"
    )


def test_the_same_rule_names_the_key_of_a_config_file(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("hidden = [64, 1000000000]\n")
    assert main(["train", str(tmp_path / "d.csv"), "--target", "y", "--config", str(config)]) == 2
    assert f"{config}: key 'hidden': layer sizes must be >= 1" in capsys.readouterr().err


def test_a_network_larger_than_the_memory_available_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(runtime, "available_memory", lambda: 1 << 30)
    started = time.perf_counter()
    line = r"hidden sizes 100000,100000: 10,001,\d{3},\d{3} parameters; training them needs about 149\.\d GiB"
    with pytest.raises(InputError, match="^" + line + " and this machine has 1.0 GiB available; use smaller layers"):
        MLP(10, 1, hidden=[100_000, 100_000])
    # a forged model.json goes through build_model: the same line, as the model's bad arguments
    with pytest.raises(InputError, match=r"^model 'mlp': bad arguments \(" + line):
        build_model({"name": "mlp", "args": {"in_features": 10, "hidden": [100_000, 100_000]}})
    assert time.perf_counter() - started < 5  # nothing was allocated (40 GB would take far longer, or fail)


def test_a_network_that_fits_is_built_and_its_count_is_the_one_checked(monkeypatch):
    seen = []
    monkeypatch.setattr("torchwork.models.tabular.check_model_memory", lambda where, n: seen.append(n))
    model = MLP(3, 2, hidden=[5, 4], categories=[7], skip=True)
    assert seen == [sum(p.numel() for p in model.parameters())]
    assert MAX_WIDTH == 1 << 20
