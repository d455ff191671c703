"""The loop's other paths against its main one: mixed precision, batched and Dataset testing loops,
``torch.compile`` and DataLoader workers each give what the plain path gives, within what their
arithmetic allows."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.support import assert_same_params, regression_data
from torchwork.models.tabular import MLP
from torchwork.training.trainer import Trainer

KW = {"loss": "mse", "optimizer": "adam", "lr": 0.01, "epochs": 4, "batch_size": 32, "seed": 3, "device": "cpu"}


def twin_models(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    model = MLP(3, hidden=(32, 32))
    return model, copy.deepcopy(model)


@pytest.mark.slow
def test_bf16_mixed_follows_float32_within_bfloat16_precision():
    """bfloat16 keeps 8 bits of mantissa: losses agree to about 1%, and training still learns."""
    X, y = regression_data(512)
    a, b = twin_models()
    h32 = Trainer(**KW).fit(a, (X[:400], y[:400]), (X[400:], y[400:]))
    h16 = Trainer(**KW, precision="bf16-mixed").fit(b, (X[:400], y[:400]), (X[400:], y[400:]))
    assert h16["val_loss"] == pytest.approx(h32["val_loss"], rel=0.05)
    assert h16["val_loss"][-1] < 0.2 * h16["val_loss"][0]  # it learned
    assert all(p.dtype == torch.float32 for p in b.parameters())  # weights stay float32 ("mixed")
    different = any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert different  # the bf16 path really ran in bf16


@pytest.mark.parametrize("eval_batch_size", [None, 7, 50])
@pytest.mark.slow
def test_the_testing_loop_in_batches_equals_one_batch(eval_batch_size):
    """The validation loss is the mean over rows whatever the batches (a short last one included)."""
    X, y = regression_data(300)
    a, b = twin_models()
    one = Trainer(**KW, eval_batch_size=None).fit(a, (X[:200], y[:200]), (X[200:], y[200:]))
    batched = Trainer(**KW, eval_batch_size=eval_batch_size).fit(b, (X[:200], y[:200]), (X[200:], y[200:]))
    assert_same_params(a, b)  # the testing loop never touches the weights
    assert batched["val_loss"] == pytest.approx(one["val_loss"], rel=1e-6)


def test_the_testing_loop_on_a_dataset_equals_tensors():
    X, y = regression_data(300)
    a, b = twin_models()
    tensors = Trainer(**KW).fit(a, (X[:200], y[:200]), (X[200:], y[200:]))
    dataset = torch.utils.data.TensorDataset(X[200:], y[200:])
    from_dataset = Trainer(**KW, eval_batch_size=16).fit(b, (X[:200], y[:200]), dataset)
    assert_same_params(a, b)
    assert from_dataset["val_loss"] == pytest.approx(tensors["val_loss"], rel=1e-6)


@pytest.mark.slow
def test_dataloader_workers_give_the_same_fit():
    """Two worker processes fetch the same batches in the same order as the main process does."""
    X, y = regression_data(256)
    dataset = torch.utils.data.TensorDataset(X, y)
    a, b = twin_models()
    Trainer(**KW, num_workers=0).fit(a, dataset)
    Trainer(**KW, num_workers=2).fit(b, dataset)
    assert_same_params(a, b)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inside inductor
def test_compile_equals_eager_within_float_tolerance():
    """``torch.compile`` fuses kernels: the same arithmetic, summed in another order."""
    pytest.importorskip("torch._inductor")
    X, y = regression_data(256)
    a, b = twin_models()
    eager = Trainer(**KW).fit(a, (X[:200], y[:200]), (X[200:], y[200:]))
    try:
        compiled = Trainer(**KW, compile=True).fit(b, (X[:200], y[:200]), (X[200:], y[200:]))
    except Exception as exc:  # no C++ toolchain for inductor on this machine
        if "compiler" in str(exc).lower() or "InductorError" in type(exc).__name__:
            pytest.skip(f"torch.compile cannot build kernels here: {str(exc).splitlines()[0]}")
        raise
    assert compiled["val_loss"] == pytest.approx(eager["val_loss"], rel=1e-4)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
