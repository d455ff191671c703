"""The tutorial "PyTorch Workflow Fundamentals", sections 1 to 6, with torchwork's pieces.

:func:`run_demo` prints what the tutorial prints, in its order and format, and writes the
two model files and the plots. On the CPU the numbers are the tutorial's, digit for digit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from torchwork.core.runtime import resolve_device
from torchwork.data.split import make_line, split
from torchwork.files.atomic import ensure_dir
from torchwork.files.weights import load_into, save_state_dict
from torchwork.models.tutorial import LinearRegressionModel, LinearRegressionModelV2
from torchwork.report.plots import plot_loss_curves, plot_predictions
from torchwork.training.callbacks import EpochPrinter
from torchwork.training.trainer import Trainer

WEIGHT, BIAS = 0.7, 0.3
MODEL_0 = "01_pytorch_workflow_model_0.pth"
MODEL_1 = "01_pytorch_workflow_model_1.pth"


def run_demo(out: str | Path = ".", device: str = "auto", echo: Callable[..., Any] = print) -> dict[str, Any]:
    """Run the whole tutorial; return its models, predictions and histories for inspection."""
    out = Path(out)
    target = resolve_device(device, "--device")  # fail on a bad --device before printing anything
    models_dir, plots_dir = ensure_dir(out / "models"), ensure_dir(out / "plots")

    def heading(text: str) -> None:
        echo(f"\n## {text}")

    def show(label: str, value: Any) -> None:
        echo(f">>> {label}")
        echo(repr(value))

    # 1. Data: a straight line with known parameters, split 80/20 in order.
    heading("1. Data preparing and loading")
    X, y = make_line(WEIGHT, BIAS, start=0, end=1, step=0.02)
    show("X[:5], y[:5]", (X[:5], y[:5]))
    (X_train, y_train), _, (X_test, y_test) = split(X, y, test=0.2)
    show(
        "len(X_train), len(y_train), len(X_test), len(y_test)",
        (len(X_train), len(y_train), len(X_test), len(y_test)),
    )
    plot_predictions(X_train, y_train, X_test, y_test, path=plots_dir / "01_data.png")
    echo(f"Plot: {plots_dir / '01_data.png'}")

    # 2. A model built from two nn.Parameters, and its (random) predictions.
    heading("2. Build a model")
    torch.manual_seed(42)
    model_0 = LinearRegressionModel()
    show("list(model_0.parameters())", list(model_0.parameters()))
    show("model_0.state_dict()", model_0.state_dict())
    trainer = Trainer(loss="l1", optimizer="sgd", lr=0.01, epochs=100, log_every=10, seed=42, device="cpu")
    y_preds = trainer.predict(model_0, X_test)
    show("with torch.inference_mode(): y_preds = model_0(X_test)", y_preds)
    plot_predictions(X_train, y_train, X_test, y_test, y_preds, path=plots_dir / "02_untrained_predictions.png")
    echo(f"Plot: {plots_dir / '02_untrained_predictions.png'}")

    # 3. Train: L1 loss, SGD(lr=0.01), 100 epochs, a log line every 10.
    heading("3. Train the model")
    trainer.callbacks.append(
        EpochPrinter("Epoch: {index} | MAE Train Loss: {train_loss} | MAE Test Loss: {val_loss} ", 10, echo)
    )
    history_0 = trainer.fit(model_0, (X_train, y_train), (X_test, y_test))
    plot_loss_curves(
        [epoch - 1 for epoch in history_0["epoch"]],  # the tutorial's loop index, as printed above
        history_0["train_loss"],
        history_0["val_loss"],
        path=plots_dir / "03_loss_curves.png",
    )
    echo(f"Plot: {plots_dir / '03_loss_curves.png'}")
    echo("The model learned the following values for weights and bias:")
    echo(model_0.state_dict())
    echo("\nAnd the original values for weights and bias are:")
    echo(f"weights: {WEIGHT}, bias: {BIAS}")

    # 4. Inference with the trained model.
    heading("4. Making predictions with a trained PyTorch model (inference)")
    y_preds = trainer.predict(model_0, X_test)
    show("model_0.eval(); with torch.inference_mode(): y_preds = model_0(X_test)", y_preds)
    plot_predictions(X_train, y_train, X_test, y_test, y_preds, path=plots_dir / "04_trained_predictions.png")
    echo(f"Plot: {plots_dir / '04_trained_predictions.png'}")

    # 5. Save the state_dict, load it into a fresh model, compare predictions.
    heading("5. Saving and loading a PyTorch model")
    path_0 = models_dir / MODEL_0
    save_state_dict(model_0, path_0)  # said after it succeeded: a failed save never reads as saved
    echo(f"Saving model to: {path_0}")
    loaded_model_0 = load_into(LinearRegressionModel(), path_0)
    loaded_preds = trainer.predict(loaded_model_0, X_test)
    show("y_preds == loaded_model_preds", y_preds == loaded_preds)
    echo(f"Loaded model's predictions equal the original's: {bool(torch.equal(y_preds, loaded_preds))}")

    # 6. All of it again, device-agnostic, with nn.Linear.
    heading("6. Putting it all together")
    echo(f"Using device: {target.type}")
    torch.manual_seed(42)
    model_1 = LinearRegressionModelV2()
    show("model_1, model_1.state_dict()", (model_1, model_1.state_dict()))
    trainer_1 = Trainer(
        loss="l1",
        optimizer="sgd",
        lr=0.01,
        epochs=1000,
        log_every=100,
        seed=42,
        device=target,
        callbacks=[EpochPrinter("Epoch: {index} | Train loss: {train_loss} | Test loss: {val_loss}", 100, echo)],
    )
    history_1 = trainer_1.fit(model_1, (X_train, y_train), (X_test, y_test))
    show("next(model_1.parameters()).device", next(model_1.parameters()).device)
    echo("The model learned the following values for weights and bias:")
    echo(model_1.state_dict())
    echo("\nAnd the original values for weights and bias are:")
    echo(f"weights: {WEIGHT}, bias: {BIAS}")
    y_preds_1 = trainer_1.predict(model_1, X_test)
    show("model_1.eval(); with torch.inference_mode(): y_preds = model_1(X_test)", y_preds_1)
    plot_predictions(X_train, y_train, X_test, y_test, y_preds_1, path=plots_dir / "05_model_1_predictions.png")
    echo(f"Plot: {plots_dir / '05_model_1_predictions.png'}")
    path_1 = models_dir / MODEL_1
    save_state_dict(model_1, path_1)
    echo(f"Saving model to: {path_1}")
    loaded_model_1 = load_into(LinearRegressionModelV2(), path_1).to(target)
    echo(f"Loaded model:\n{loaded_model_1}")
    echo(f"Model on device:\n{next(loaded_model_1.parameters()).device}")
    loaded_preds_1 = trainer_1.predict(loaded_model_1, X_test)
    show("y_preds == loaded_model_1_preds", y_preds_1 == loaded_preds_1)
    echo(f"Loaded model's predictions equal the original's: {bool(torch.equal(y_preds_1, loaded_preds_1))}")
    return {
        "model_0": model_0,
        "model_1": model_1,
        "history_0": history_0,
        "history_1": history_1,
        "preds_0": y_preds,
        "preds_1": y_preds_1,
        "paths": [path_0, path_1, *sorted(plots_dir.glob("*.png"))],
    }
