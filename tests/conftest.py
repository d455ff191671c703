"""Shared fixtures. Helpers that are plain functions live in ``tests/support.py``."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from tests.support import EXAMPLES


@pytest.fixture(scope="session")
def sensors_csv():
    """The README's example table (``examples/sensors.csv``)."""
    return EXAMPLES / "sensors.csv"


@pytest.fixture(scope="session")
def sensors_run(tmp_path_factory, sensors_csv):
    """A short run trained on the README's example table, shared by tests that only read it."""
    import torchwork

    out = tmp_path_factory.mktemp("sensors") / "run"
    torchwork.train(str(sensors_csv), target="power", out=out, epochs=40, verbose=False)
    return out


@pytest.fixture
def copy_of(tmp_path):
    """``copy_of(folder)``: a copy of a run folder that a test may damage."""

    def copy(folder):
        target = tmp_path / folder.name
        shutil.copytree(folder, target)
        return target

    return copy


@pytest.fixture(scope="session")
def smooth_csv(tmp_path_factory):
    """600 rows of a smooth nonlinear function of three features, and some noise."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(600, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"] = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 - 0.5 * X[:, 2] + 0.05 * rng.normal(size=600)
    path = tmp_path_factory.mktemp("smooth") / "smooth.csv"
    frame.to_csv(path, index=False)
    return path
