"""The run folder on disk: writing a finished run, reading one back, summarising one.

A finished folder holds:

- ``config.json``: the resolved configuration, defaults included;
- ``run.json``: the data (path, SHA-256, rows), the split, device, epochs, time, versions;
- ``model.safetensors`` and ``model.json`` (architecture and its arguments, the
  preprocessing fitted on the training split, each column's kind and encoding, the baselines);
- ``history.csv``, ``metrics.json``, ``plots/*.png``, ``report.html``;
- ``checkpoints/last.safetensors`` (the last checkpoint) and ``tensorboard/`` if enabled;
- ``manifest.json``: the SHA-256 of every file, checked before anything is loaded.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from torchwork.core.errors import InputError
from torchwork.data.preprocess import Preprocessor
from torchwork.files.atomic import atomic_write, ensure_dir
from torchwork.files.manifest import verify_manifest, write_manifest
from torchwork.files.safeload import load_weights_bytes, save_weights_bytes
from torchwork.files.weights import check_compatible
from torchwork.models.registry import build_model, rebuild
from torchwork.runs.baselines import Baselines
from torchwork.runs.evaluating import model_predictions
from torchwork.runs.preparing import Prepared
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
    "Confusion matrix": "confusion_matrix.png",
    "ROC curves": "roc.png",
    "Precision-recall curves": "precision_recall.png",
    "Classes in each split": "class_balance.png",
    "Decision regions": "decision_regions.png",
}


def partial_path(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _raw(prepared: Prepared, part: str) -> Any:
    """The feature columns of a part's rows, as they are in the table."""
    return prepared.table.frame.iloc[prepared.rows[prepared.parts[part]]][prepared.pre.features]


def _plots(run: Run, prepared: Prepared) -> dict[str, bytes]:
    from torchwork.report import plots as P

    h = run.history
    losses = [v for v in (*h["train_loss"], *h["val_loss"]) if v is not None]
    log_scale = run.task == "regression" and all(v > 0 for v in losses)  # a loss of 0 (a constant target) has no log
    out = {
        "Training and validation loss": P.plot_loss_curves(
            h["epoch"], h["train_loss"], h["val_loss"], title="Training and validation loss curves",
            test_label="Validation loss", log_scale=log_scale, best_epoch=run.info.get("best_epoch"),
        ),
    }  # fmt: skip
    part = next(p for p in ("test", "val", "train") if prepared.size(p))
    s = prepared.parts[part]
    predicted = model_predictions(run.model, run.pre, prepared.X[s])
    truth = prepared.truth[s]
    numeric_only = all(c.kind == "numeric" for c in run.pre.columns)
    if run.task == "regression":
        out[f"Predicted vs actual ({part} split)"] = P.plot_pred_vs_actual(
            truth, predicted, title=f"Predicted vs actual ({part})"
        )
        out[f"Residuals ({part} split)"] = P.plot_residuals(truth, predicted, title=f"Residuals ({part})")
        if numeric_only and len(run.features) == 1 and truth.shape[1] == 1:
            train = prepared.parts["train"]
            out["Predictions (the tutorial's plot)"] = P.plot_predictions(
                _raw(prepared, "train").to_numpy(float), prepared.truth[train], _raw(prepared, part).to_numpy(float),
                truth, predicted,
            )  # fmt: skip
        return out
    classes = [str(c) for c in run.classes]
    out[f"Confusion matrix ({part} split)"] = P.plot_confusion_matrix(
        run.metrics["model"][part]["confusion_matrix"], classes, title=f"Confusion matrix ({part})"
    )
    if len(classes) == 2:
        from torchwork.evaluation.metrics import precision_recall_curve, roc_curve

        baseline = run.baselines.predictions(prepared.X[s])["logistic_regression"]
        roc, pr = {}, {}
        for label, proba in (("model", predicted), ("logistic regression", baseline)):
            fpr, tpr, _ = roc_curve(truth, proba[:, 1])
            precision, recall, _ = precision_recall_curve(truth, proba[:, 1])
            name = "model" if label == "model" else "logistic_regression"
            roc[label] = (fpr, tpr, run.metrics[name][part]["roc_auc"])
            pr[label] = (recall, precision, None)
        out[f"ROC curves ({part} split)"] = P.plot_roc_curves(roc, title=f"ROC curves ({part})")
        out[f"Precision-recall curves ({part} split)"] = P.plot_pr_curves(
            pr, title=f"Precision-recall curves ({part})", chance=float(np.mean(truth == 1))
        )
    counts = {p: np.bincount(prepared.truth[prepared.parts[p]], minlength=len(classes)).tolist()
              for p in ("train", "val", "test") if prepared.size(p)}  # fmt: skip
    out["Classes in each split"] = P.plot_class_balance(counts, classes)
    if numeric_only and len(run.features) in (1, 2):
        import pandas as pd

        def regions(values: np.ndarray) -> np.ndarray:
            return run.predict_proba(pd.DataFrame(values, columns=run.features))

        train = prepared.parts["train"]
        out[f"Decision regions ({part} split)"] = P.plot_decision_regions(
            regions, _raw(prepared, "train").to_numpy(float), prepared.truth[train],
            _raw(prepared, part).to_numpy(float), truth, classes, run.features, title="Decision regions",
        )  # fmt: skip
    return out


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
    html = render_report(
        title=title, config=run.config, info=run.info, metrics=run.metrics, model_meta=run.meta, plots=plots,
        columns=column_summary(run.pre, prepared), notes=run.info.get("notes", []),
    )  # fmt: skip
    atomic_write(folder / "report.html", html)
    write_manifest(folder)


def column_summary(pre: Any, prepared: Prepared) -> list[dict[str, Any]]:
    """Each feature column, its kind and what was filled in, for the report."""
    rows = []
    for c in pre.columns:
        if c.kind == "categorical":
            enc = pre.categorical[c.name]
            detail = f"{len(enc.categories)} categories" + (f", {len(enc.rare)} rare" if enc.rare else "")
        elif c.kind == "datetime":
            detail = "parts: " + ", ".join(pre.numeric[c.name].parts)
        else:
            enc = pre.numeric[c.name]
            detail = f"median {enc.fill:.4g}" + (", with a missing indicator" if enc.indicator else "")
        rows.append({"name": c.name, "kind": c.kind, "detail": f"{c.reason}; {detail}",
                     "filled": prepared.filled.get(c.name, 0)})  # fmt: skip
    return rows


def complete_run_path(path: str | os.PathLike[str]) -> Path:
    """``RUN_DIR`` for ``RUN_DIR`` or ``RUN_DIR.partial`` (the path an interrupted run printed)."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".partial")) if path.name.endswith(".partial") else path


def is_run_path(path: str | os.PathLike[str]) -> bool:
    """A run folder, an unfinished one (``RUN_DIR.partial``), or a path whose ``.partial`` exists."""
    path = Path(path)
    run = complete_run_path(path)
    return path.is_dir() or partial_path(run).is_dir()


def _missing_run(path: Path, data_hint: str | None = None) -> InputError:
    run = complete_run_path(path)
    if path.is_file():
        swapped = " (the order is RUN_DIR then DATA)" if data_hint and Path(data_hint).is_dir() else ""
        return InputError(f"{path}: is a file, not a run folder{swapped}")
    if partial_path(run).is_dir():
        return InputError(
            f"{run}: the run is not finished ({partial_path(run)} holds it): continue it with "
            f"'torchwork resume {run}', "
            f"or see how far it got with 'torchwork inspect {partial_path(run)}'"
        )
    return InputError(f"{path}: no such run folder")


def _build(spec: dict[str, Any], weights: dict[str, Any], source: str, trust_code: bool, given: Any = None) -> Any:
    """The model, checked against the weights' names and shapes before any memory is allocated for it.

    ``given`` (your class, factory or instance) rebuilds a model the folder alone cannot.
    """
    import torch

    def make() -> Any:
        return rebuild(spec, given) if given is not None else build_model(spec, trust_code=trust_code)

    if given is None or not isinstance(given, torch.nn.Module):
        with torch.device("meta"), warnings.catch_warnings():  # shapes only: a forged architecture costs nothing
            warnings.simplefilter("ignore")  # (nor a warning about initialising what it would not fill)
            skeleton = make()
        check_compatible(skeleton, weights, source)
    model = make()
    check_compatible(model, weights, source)
    model.load_state_dict(weights)
    return model.eval()


def load_run(
    path: str | os.PathLike[str], *, trust_model_code: bool = False, verify_key: str | os.PathLike[str] | None = None,
    model: Any = None, data_hint: str | None = None,
) -> Run:  # fmt: skip
    """A finished run folder, checked (signature, if asked, then manifest) before any file in it is parsed.

    A run whose model is your own class (``package.module:Class``) needs
    ``trust_model_code=True``: importing the class runs its module's code; or pass the class
    (a factory, or a new instance) as ``model``, which a class defined in a script needs.
    Every file parsed is parsed from the bytes the manifest check hashed. ``verify_key``
    (a public key) refuses a run that is not signed with its private key.
    """
    path = Path(path)
    if not path.is_dir() or path.name.endswith(".partial"):
        raise _missing_run(path, data_hint)
    if verify_key is not None:
        from torchwork.files.signing import verify_folder

        verify_folder(path, verify_key)
    docs = verify_manifest(path, REQUIRED, keep=REQUIRED)
    try:
        meta = json.loads(docs["model.json"])
        config = json.loads(docs["config.json"])
        info = json.loads(docs["run.json"])
        metrics = json.loads(docs["metrics.json"])
        history = History.from_csv(docs["history.csv"].decode())
        if meta.get("format") != MODEL_FORMAT:
            raise ValueError(f"unknown model format {meta.get('format')!r}")
        spec = meta["architecture"]
        if not isinstance(spec, dict):
            raise TypeError("architecture is not a table")
        pre = Preprocessor.from_json(meta["preprocessing"])
        baselines = Baselines.from_json(pre, meta["baselines"])
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise InputError(f"{path}: not a torchwork run folder ({' '.join(str(exc).split())})") from None
    weights = load_weights_bytes(docs["model.safetensors"], str(path / "model.safetensors"), safetensors_only=True)
    built = _build(spec, weights.tensors, str(path / "model.safetensors"), trust_model_code, model)
    return Run(built, pre, baselines, config, history, metrics, info, meta, path)


def read_run_summary(
    path: str | os.PathLike[str], *, verify_key: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """What a run folder holds, for ``torchwork inspect``: checked, never built or imported.

    For an unfinished run (``RUN_DIR.partial``, or ``RUN_DIR`` while only the partial exists):
    how far it got, from its configuration and its last checkpoint.
    """
    from torchwork.report.inspect import describe_weights, format_run_summary

    path = Path(path)
    run = complete_run_path(path)
    if path.name.endswith(".partial") or (not path.is_dir() and partial_path(run).is_dir()):
        return _partial_summary(partial_path(run))
    if verify_key is not None:
        from torchwork.files.signing import verify_folder

        verify_folder(path, verify_key)
    names = ("model.json", "run.json", "metrics.json", "config.json", "model.safetensors")
    docs = verify_manifest(path, REQUIRED, keep=names)
    try:
        parsed = {name.removesuffix(".json"): json.loads(docs[name]) for name in names[:4]}
        for key in ("architecture", "preprocessing", "parameters", "versions"):
            parsed["model"][key]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a torchwork run folder ({exc})") from None
    weights = load_weights_bytes(docs["model.safetensors"], str(path / "model.safetensors"), safetensors_only=True)
    summary = {"path": str(path), "state": "finished", **parsed,
               "weights": describe_weights(path / "model.safetensors", weights)}  # fmt: skip
    try:  # every value inspect shows is of the kind it expects: a forged one is refused here, in one line
        format_run_summary(summary)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise InputError(f"{path}: not a torchwork run folder ({type(exc).__name__}: {exc})") from None
    return summary


def _partial_summary(partial: Path) -> dict[str, Any]:
    """An unfinished run: its configuration and, from its last checkpoint, how far it got."""
    from torchwork.files.checkpoint import load_checkpoint

    if not partial.is_dir():
        raise InputError(f"{partial}: no such run folder")
    summary: dict[str, Any] = {"path": str(partial), "state": "unfinished", "checkpoint": None}
    try:
        summary["config"] = json.loads((partial / "config.json").read_text())
    except (OSError, ValueError):
        summary["config"] = None
    ckpt = partial / CHECKPOINT
    if ckpt.exists():
        state, extra = load_checkpoint(ckpt)
        fit = state["fit"]
        rows = state.get("history", [])
        callbacks = state.get("callbacks", {})
        best = next((cb for key, cb in callbacks.items() if key.endswith("EarlyStopping")), None)
        summary["checkpoint"] = {
            "path": str(ckpt), "epochs_done": fit["epoch"], "steps": fit["step"], "batch": fit["batch"],
            "finished_training": bool(extra.get("finished")), "last": rows[-1] if rows else None,
            "best_epoch": best.get("best_epoch") if best else None, "best_val_loss": best.get("best") if best else None,
        }  # fmt: skip
    return summary
