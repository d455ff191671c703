"""The run folder on disk: writing a finished run, reading one back, summarising one.

A finished folder holds:

- ``config.json``: the resolved configuration, defaults included;
- ``run.json``: the data (path, SHA-256, rows), the split, device, epochs, time, versions;
- ``model.safetensors`` and ``model.json`` (architecture and its arguments, the
  preprocessing fitted on the training split, the baseline);
- ``history.csv``, ``metrics.json``, ``plots/*.png``, ``report.html``;
- ``checkpoints/last.safetensors`` (the last checkpoint) and ``tensorboard/`` if enabled;
- ``manifest.json``: the SHA-256 of every file, checked before anything is loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torchwork.core.errors import InputError
from torchwork.data.preprocess import Preprocessor
from torchwork.files.atomic import atomic_write, ensure_dir
from torchwork.files.manifest import verify_manifest, write_manifest
from torchwork.files.safeload import load_weights, save_weights_bytes
from torchwork.files.weights import check_compatible
from torchwork.models.registry import build_model
from torchwork.runs.recipe import Prepared, predict_target
from torchwork.runs.run import Run
from torchwork.training.history import History

MODEL_FORMAT = "torchwork-model/2"
RUN_FORMAT = "torchwork-run/2"
CHECKPOINT = Path("checkpoints") / "last.safetensors"
REQUIRED = ("config.json", "run.json", "model.json", "model.safetensors", "history.csv", "metrics.json")
PLOT_FILES = {
    "Training and validation loss": "loss.png",
    "Predicted vs actual": "pred_vs_actual.png",
    "Residuals": "residuals.png",
    "Predictions (the tutorial's plot)": "predictions.png",
}


def partial_path(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _plots(run: Run, prepared: Prepared) -> dict[str, bytes]:
    from torchwork.report.plots import plot_loss_curves, plot_pred_vs_actual, plot_predictions, plot_residuals

    h = run.history
    plots = {
        "Training and validation loss": plot_loss_curves(
            h["epoch"], h["train_loss"], h["val_loss"], title="Training and validation loss curves",
            test_label="Validation loss", log_scale=True, best_epoch=run.info.get("best_epoch"),
        ),
    }  # fmt: skip
    part = next(p for p in ("test", "val", "train") if len(prepared.parts[p]))
    X, y = prepared.raw(part)
    preds = predict_target(run.model, run.pre, X)
    plots[f"Predicted vs actual ({part} split)"] = plot_pred_vs_actual(y, preds, title=f"Predicted vs actual ({part})")
    plots[f"Residuals ({part} split)"] = plot_residuals(y, preds, title=f"Residuals ({part})")
    if X.shape[1] == 1 and y.shape[1] == 1:
        X_train, y_train = prepared.raw("train")
        plots["Predictions (the tutorial's plot)"] = plot_predictions(X_train, y_train, X, y, preds)
    return plots


def write_run(run: Run, prepared: Prepared, folder: Path, title: str) -> None:
    """Write every file of a finished run into ``folder``, the manifest last."""
    from torchwork.report.html import render_report

    atomic_write(folder / "model.safetensors", save_weights_bytes(run.model.state_dict()))
    atomic_write(folder / "model.json", json.dumps(run.meta, indent=2) + "\n")
    atomic_write(folder / "run.json", json.dumps(run.info, indent=2) + "\n")
    atomic_write(folder / "history.csv", run.history.to_csv())
    atomic_write(folder / "metrics.json", json.dumps(run.metrics, indent=2) + "\n")
    plots = _plots(run, prepared)
    ensure_dir(folder / "plots")
    for caption, png in plots.items():
        name = next(f for prefix, f in PLOT_FILES.items() if caption.startswith(prefix))
        atomic_write(folder / "plots" / name, png)
    html = render_report(title=title, config=run.config, info=run.info, metrics=run.metrics, model_meta=run.meta,
                         plots=plots)  # fmt: skip
    atomic_write(folder / "report.html", html)
    write_manifest(folder)


def load_run(path: str | os.PathLike[str], *, trust_model_code: bool = False) -> Run:
    """A finished run folder, checked against its manifest before any file in it is parsed.

    A run whose model is your own class (``package.module:Class``) needs
    ``trust_model_code=True``: importing the class runs its module's code.
    """
    path = Path(path)
    if not path.is_dir():
        partial = partial_path(path)
        hint = f" ({partial} holds an unfinished run: torchwork resume {path})" if partial.is_dir() else ""
        raise InputError(f"{path}: no such run folder{hint}")
    verify_manifest(path, REQUIRED)
    try:
        meta = json.loads((path / "model.json").read_text())
        config = json.loads((path / "config.json").read_text())
        info = json.loads((path / "run.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
        history = History.from_csv((path / "history.csv").read_text())
        if meta.get("format") != MODEL_FORMAT:
            raise ValueError(f"unknown model format {meta.get('format')!r}")
        spec = meta["architecture"]
        pre = Preprocessor.from_json(meta["preprocessing"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a torchwork run folder ({exc})") from None
    model = build_model(spec, trust_code=trust_model_code)
    weights = load_weights(path / "model.safetensors", safetensors_only=True).tensors
    check_compatible(model, weights, str(path / "model.safetensors"))
    model.load_state_dict(weights)
    model.eval()
    return Run(model, pre, config, history, metrics, info, meta, path)


def read_run_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a run folder holds, for ``torchwork inspect RUN_DIR``: checked, never built or imported."""
    from torchwork.report.inspect import describe_weights

    path = Path(path)
    verify_manifest(path, REQUIRED)
    try:
        docs = {name: json.loads((path / f"{name}.json").read_text()) for name in ("model", "run", "metrics", "config")}
    except ValueError as exc:
        raise InputError(f"{path}: not a torchwork run folder ({exc})") from None
    weights = load_weights(path / "model.safetensors", safetensors_only=True)
    return {"path": str(path), **docs, "weights": describe_weights(path / "model.safetensors", weights)}
