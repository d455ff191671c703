"""The demo reproduces the tutorial number for number (CPU, torch 2.13)."""

from __future__ import annotations

import pytest
import torch

from tests.support import TUTORIAL_FIXTURES
from torchwork.demo import run_demo
from torchwork.files.weights import load_state_dict

# Printed by the tutorial (sections 2 and 3); the seed file shows the first of them.
TUTORIAL_TRAINING_LOG = [
    "Epoch: 0 | MAE Train Loss: 0.31288138031959534 | MAE Test Loss: 0.48106518387794495 ",
    "Epoch: 10 | MAE Train Loss: 0.1976713240146637 | MAE Test Loss: 0.3463551998138428 ",
    "Epoch: 20 | MAE Train Loss: 0.08908725529909134 | MAE Test Loss: 0.21729660034179688 ",
    "Epoch: 30 | MAE Train Loss: 0.053148526698350906 | MAE Test Loss: 0.14464017748832703 ",
    "Epoch: 40 | MAE Train Loss: 0.04543796554207802 | MAE Test Loss: 0.11360953003168106 ",
    "Epoch: 50 | MAE Train Loss: 0.04167863354086876 | MAE Test Loss: 0.09919948130846024 ",
    "Epoch: 60 | MAE Train Loss: 0.03818932920694351 | MAE Test Loss: 0.08886633068323135 ",
    "Epoch: 70 | MAE Train Loss: 0.03476089984178543 | MAE Test Loss: 0.0805937647819519 ",
    "Epoch: 80 | MAE Train Loss: 0.03132382780313492 | MAE Test Loss: 0.07232122868299484 ",
    "Epoch: 90 | MAE Train Loss: 0.02788739837706089 | MAE Test Loss: 0.06473556160926819 ",
]
UNTRAINED_PREDICTIONS = [0.3982, 0.4049, 0.4116, 0.4184, 0.4251, 0.4318, 0.4386, 0.4453, 0.4520, 0.4588]
TRAINED_PREDICTIONS = [0.8141, 0.8256, 0.8372, 0.8488, 0.8603, 0.8719, 0.8835, 0.8950, 0.9066, 0.9182]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    result = run_demo(out, device="cpu", echo=lambda text="": lines.extend(str(text).split("\n")))
    return result, lines, out


def test_prints_the_seed_numbers(demo):
    _, lines, _ = demo
    text = "\n".join(lines)
    assert "tensor([0.3367], requires_grad=True)" in text
    assert "tensor([0.1288], requires_grad=True)" in text
    assert "OrderedDict([('weights', tensor([0.3367])), ('bias', tensor([0.1288]))])" in text
    assert "(40, 40, 10, 10)" in text
    for value in UNTRAINED_PREDICTIONS + TRAINED_PREDICTIONS:
        assert f"[{value:.4f}]" in text


def test_training_log_is_the_tutorials(demo):
    _, lines, _ = demo
    log = [line for line in lines if line.startswith("Epoch: ") and "MAE" in line]
    assert log == TUTORIAL_TRAINING_LOG


def test_output_is_in_the_tutorials_order(demo):
    _, lines, _ = demo
    text = "\n".join(lines)
    markers = [
        "## 1.", "X[:5], y[:5]", "(40, 40, 10, 10)", "## 2.", "tensor([0.3367]", "[0.3982]",
        "## 3.", "Epoch: 0 | MAE", "Epoch: 90 | MAE", "('weights', tensor([0.5784]))", "## 4.", "[0.8141]",
        "## 5.", "Saving model to:", "equal the original's: True", "## 6.", "Using device: cpu",
        "tensor([[0.7645]])", "Epoch: 0 | Train loss:", "Epoch: 900 | Train loss:",
        "tensor([[0.6968]])", "[0.8600]", "01_pytorch_workflow_model_1.pth", "equal the original's: True",
    ]  # fmt: skip
    position = 0
    for marker in markers:  # each marker after the one before it
        position = text.index(marker, position) + len(marker)


def test_learned_weights_equal_the_tutorials_saved_files(demo):
    """The tutorial saved its models; training here on the CPU gives the very same bits."""
    result, _, _ = demo
    for key, name in (
        ("model_0", "01_pytorch_workflow_model_0.pth"),
        ("model_1", "01_pytorch_workflow_model_1.pth"),
    ):
        expected = load_state_dict(TUTORIAL_FIXTURES / name)
        got = result[key].state_dict()
        assert list(got) == list(expected)
        for k in expected:
            assert torch.equal(got[k].cpu(), expected[k]), (name, k, got[k], expected[k])


def test_writes_models_and_plots(demo):
    _, _, out = demo
    for name in ("01_pytorch_workflow_model_0.pth", "01_pytorch_workflow_model_1.pth"):
        state = torch.load(out / "models" / name, weights_only=True)
        assert set(state) in ({"weights", "bias"}, {"linear_layer.weight", "linear_layer.bias"})
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == [
        "01_data.png", "02_untrained_predictions.png", "03_loss_curves.png",
        "04_trained_predictions.png", "05_model_1_predictions.png",
    ]  # fmt: skip
    for p in (out / "plots").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_records_the_epochs_the_tutorial_prints(demo):
    """The tutorial prints its loop index 0, 10, ...; torchwork counts epochs from 1: 1, 11, ..."""
    result, _, _ = demo
    assert result["history_0"]["epoch"] == list(range(1, 101, 10))
    assert result["history_1"]["epoch"] == list(range(1, 1001, 100))
