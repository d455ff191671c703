"""Saving and loading: the tutorial's .pth files, safetensors, and mismatched architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support import TUTORIAL_FIXTURES
from torchwork.core.errors import InputError
from torchwork.files.weights import load_into, load_state_dict, save_state_dict
from torchwork.models.tabular import MLP
from torchwork.models.tutorial import LinearRegressionModel, LinearRegressionModelV2
from torchwork.report.inspect import describe_weights
from torchwork.training.batching import predict


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_load_gives_identical_predictions(tmp_path, suffix):
    torch.manual_seed(0)
    model = MLP(4, hidden=(8, 8))
    X = torch.randn(20, 4)
    path = save_state_dict(model, tmp_path / f"model{suffix}")
    torch.manual_seed(1)
    fresh = MLP(4, hidden=(8, 8))
    assert not torch.equal(predict(fresh, X), predict(model, X))
    load_into(fresh, path)
    assert torch.equal(predict(fresh, X), predict(model, X))


def test_pth_is_the_tutorials_format(tmp_path):
    """A file torchwork saves is what torch.save(model.state_dict()) writes: plain torch.load reads it."""
    torch.manual_seed(42)
    model = LinearRegressionModel()
    save_state_dict(model, tmp_path / "m.pth")
    state = torch.load(tmp_path / "m.pth", weights_only=True)
    assert list(state) == ["weights", "bias"]
    assert torch.equal(state["weights"], model.weights.detach())


def test_tutorial_fixtures_load_on_cpu():
    state_0 = load_state_dict(TUTORIAL_FIXTURES / "01_pytorch_workflow_model_0.pth")
    state_1 = load_state_dict(TUTORIAL_FIXTURES / "01_pytorch_workflow_model_1.pth")
    assert all(t.device.type == "cpu" for t in [*state_0.values(), *state_1.values()])
    model = load_into(LinearRegressionModelV2(), state_1)
    assert model.linear_layer.weight.item() == pytest.approx(0.6968, abs=1e-4)


def test_inspect_reports_the_device_it_was_saved_from():
    d0 = describe_weights(TUTORIAL_FIXTURES / "01_pytorch_workflow_model_0.pth")
    d1 = describe_weights(TUTORIAL_FIXTURES / "01_pytorch_workflow_model_1.pth")
    assert d0["saved_from"] == "cpu"
    assert d1["saved_from"] == "cuda:0"  # saved on a GPU by the tutorial; read here on the CPU
    assert [(t["name"], t["shape"]) for t in d1["tensors"]] == [
        ("linear_layer.weight", [1, 1]),
        ("linear_layer.bias", [1]),
    ]
    assert d0["tensors"][0]["values"] == [pytest.approx(0.5784, abs=1e-4)]


def test_mismatched_architecture_fails_before_any_weight_changes(tmp_path):
    torch.manual_seed(0)
    path = save_state_dict(MLP(4, hidden=(8,)), tmp_path / "m.pth")
    target = MLP(4, hidden=(16,))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(InputError) as err:
        load_into(target, path)
    message = str(err.value)
    assert "nothing was loaded" in message
    assert "mismatched shapes: net.0.weight (file (8, 4), model (16, 4))" in message
    for k, v in target.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(InputError, match=r"missing keys: linear_layer.weight, linear_layer.bias; "
                                         r"unexpected keys: weights, bias"):  # fmt: skip
        load_into(LinearRegressionModelV2(), TUTORIAL_FIXTURES / "01_pytorch_workflow_model_0.pth")


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_gpu_saved_file_maps_to_the_requested_device(device):
    """Saved on cuda:0; read with the storages on the CPU first, then moved where asked ("meta" is
    a device every machine has, so the move is tested without a GPU)."""
    state = load_state_dict(TUTORIAL_FIXTURES / "01_pytorch_workflow_model_1.pth", map_location=device)
    assert {t.device for t in state.values()} == {torch.device(device)}
    assert [tuple(t.shape) for t in state.values()] == [(1, 1), (1,)]
    if device == "cpu":
        assert state["linear_layer.bias"].item() == pytest.approx(0.3025, abs=1e-4)


def test_tied_weights_save_and_load(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight  # one parameter under two names

        def forward(self, x):
            return self.b(self.a(x))

    torch.manual_seed(0)
    model = Tied()
    save_state_dict(model, tmp_path / "t.safetensors")
    fresh = load_into(Tied(), tmp_path / "t.safetensors")
    X = torch.randn(5, 4)
    assert torch.equal(predict(fresh, X), predict(model, X)) and fresh.a.weight is fresh.b.weight
