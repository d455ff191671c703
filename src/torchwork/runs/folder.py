"""The run folder on disk: where it goes, what it records, writing it, reading it back.

A finished folder holds:

- ``config.json``: the resolved configuration, defaults included;
- ``run.json``: the data (path, SHA-256, rows), the split, device, epochs, time, versions;
- ``model.safetensors`` and ``model.json`` (architecture and its arguments, the
  preprocessing fitted on the training split, each column's kind and encoding, the baselines);
- ``history.csv``, ``metrics.json``, ``plots/*.png``, ``report.html``;
- ``checkpoints/last.safetensors`` (the last checkpoint) and ``tensorboard/`` if enabled;
- ``manifest.json``: the SHA-256 of every file, checked before anything is loaded.

The rules of where it goes, so that nothing a user had is ever lost:

- ``RUN_DIR`` is built in ``RUN_DIR.partial``, created atomically and locked by the process
  that writes it; a second process aiming at the same folder is told who holds it.
- ``--overwrite`` replaces only a finished torchwork run whose every file its manifest lists;
  a folder holding anything else (your notes, your data) is never replaced, and the data
  being trained on may not live inside the folder.
- The finished run is moved into place without replacing anything that appeared meanwhile
  (the run then stays in ``RUN_DIR.partial``); with ``--overwrite`` the old and new runs are
  swapped atomically, so ``RUN_DIR`` always holds a whole run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchwork.core import __version__
from torchwork.core.errors import BusyError, InputError, IntegrityError, OutputError, one_line
from torchwork.data.preprocess import Preprocessor
from torchwork.evaluation.calibration import calibration_bins, expected_calibration_error
from torchwork.evaluation.metrics import TREES
from torchwork.files.atomic import (
    OWNER,
    Lock,
    atomic_write,
    claim,
    ensure_dir,
    exchange,
    fsync_dir,
    holder,
    is_locked,
    lock,
    move_noreplace,
    sha256_file,
)
from torchwork.files.integrity import MANIFEST, unlisted_files, verify_manifest, write_manifest
from torchwork.files.weights import check_compatible, load_weights_bytes, save_weights_bytes
from torchwork.models.registry import build_model, count_parameters, rebuild
from torchwork.runs.config import TrainConfig
from torchwork.runs.prepare import PARTS, Prepared
from torchwork.runs.recipe import Baselines, Trees, evaluate, fit_trees, model_predictions
from torchwork.runs.run import Run, frame_digest
from torchwork.training.distributed import Group, on_main
from torchwork.training.loop import History

# ------------------------------------------------------------------------------- the run folder
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
    "Reliability": "reliability.png",
    "Classes in each split": "class_balance.png",
    "Decision regions": "decision_regions.png",
}


def partial_path(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _raw(prepared: Prepared, part: str) -> Any:
    """The feature columns of a part's rows, as they are in the table."""
    return prepared.table.frame.iloc[prepared.rows[prepared.parts[part]]][prepared.pre.features]


def _plots(run: Run, prepared: Prepared, notes: list[str] | None = None) -> dict[str, bytes]:
    """The run's plots by caption. A plot that fails is left out, and ``notes`` says which and why:
    the run is written without it (a plot is never worth a run)."""
    from torchwork.report import plots as P

    out: dict[str, bytes] = {}

    def draw(caption: str, make: Any) -> None:
        try:
            out[caption] = make()
        except Exception as exc:  # matplotlib on text or numbers it cannot lay out: say so, keep the run
            why = one_line(exc, 160, first_line=False)
            if notes is not None:
                notes.append(f"the plot {caption!r} was left out: matplotlib failed ({type(exc).__name__}: {why})")

    h = run.history
    losses = [v for v in (*h["train_loss"], *h["val_loss"]) if v is not None]
    log_scale = bool(losses) and all(v > 0 for v in losses)  # a loss of 0 (a constant target) has no log
    draw("Training and validation loss", lambda: P.plot_loss_curves(
        h["epoch"], h["train_loss"], h["val_loss"], title="Training and validation loss curves",
        test_label="Validation loss", log_scale=log_scale, best_epoch=run.info.get("best_epoch"),
    ))  # fmt: skip
    part = next(p for p in ("test", "val", "train") if prepared.size(p))
    s = prepared.parts[part]
    predicted = model_predictions(run.model, run.pre, prepared.X[s])
    truth = prepared.truth[s]
    numeric_only = all(c.kind == "numeric" for c in run.pre.columns)
    if run.task == "regression":
        draw(f"Predicted vs actual ({part} split)",
             lambda: P.plot_pred_vs_actual(truth, predicted, title=f"Predicted vs actual ({part})"))  # fmt: skip
        draw(f"Residuals ({part} split)", lambda: P.plot_residuals(truth, predicted, title=f"Residuals ({part})"))
        if numeric_only and len(run.features) == 1 and truth.shape[1] == 1:
            train = prepared.parts["train"]
            draw("Predictions (the tutorial's plot)", lambda: P.plot_predictions(
                _raw(prepared, "train").to_numpy(float), prepared.truth[train], _raw(prepared, part).to_numpy(float),
                truth, predicted,
            ))  # fmt: skip
        return out
    classes = [str(c) for c in run.classes]
    draw(f"Confusion matrix ({part} split)", lambda: P.plot_confusion_matrix(
        run.metrics["model"][part]["confusion_matrix"], classes, title=f"Confusion matrix ({part})"
    ))  # fmt: skip
    baseline = run.baselines.predictions(prepared.X[s])["logistic_regression"]
    if len(classes) == 2:
        from torchwork.evaluation.metrics import precision_recall_curve, roc_curve

        roc, pr = {}, {}
        for label, proba in (("model", predicted), ("logistic regression", baseline)):
            fpr, tpr, _ = roc_curve(truth, proba[:, 1])
            precision, recall, _ = precision_recall_curve(truth, proba[:, 1])
            name = "model" if label == "model" else "logistic_regression"
            roc[label] = (fpr, tpr, run.metrics[name][part]["roc_auc"])
            pr[label] = (recall, precision, None)
        draw(f"ROC curves ({part} split)", lambda: P.plot_roc_curves(roc, title=f"ROC curves ({part})"))
        draw(f"Precision-recall curves ({part} split)", lambda: P.plot_pr_curves(
            pr, title=f"Precision-recall curves ({part})", chance=float(np.mean(truth == 1))
        ))  # fmt: skip
    reliability = {}
    for label, proba in (("model", predicted), ("logistic regression", baseline)):
        table = calibration_bins(truth, proba)
        reliability[label] = (table, expected_calibration_error(table))
    draw(f"Reliability ({part} split)", lambda: P.plot_reliability(reliability, title=f"Reliability ({part})"))
    counts = {p: np.bincount(prepared.truth[prepared.parts[p]], minlength=len(classes)).tolist()
              for p in ("train", "val", "test") if prepared.size(p)}  # fmt: skip
    draw("Classes in each split", lambda: P.plot_class_balance(counts, classes))
    if numeric_only and len(run.features) in (1, 2):
        import pandas as pd

        def regions(values: np.ndarray) -> np.ndarray:
            return run.predict_proba(pd.DataFrame(values, columns=run.features))

        train = prepared.parts["train"]
        draw(f"Decision regions ({part} split)", lambda: P.plot_decision_regions(
            regions, _raw(prepared, "train").to_numpy(float), prepared.truth[train],
            _raw(prepared, part).to_numpy(float), truth, classes, run.features, title="Decision regions",
        ))  # fmt: skip
    return out


def write_run(run: Run, prepared: Prepared, folder: Path, title: str) -> None:
    """Write every file of a finished run into ``folder``, the manifest last."""
    from torchwork.report.html import render_report

    notes: list[str] = []
    plots = _plots(run, prepared, notes)  # first: a plot left out is noted in run.json too
    if notes:
        run.info["notes"] = [*run.info.get("notes", []), *notes]
    atomic_write(folder / "model.safetensors", save_weights_bytes(run.model.state_dict()))
    atomic_write(folder / "model.json", json.dumps(run.meta, indent=2) + "\n")
    atomic_write(folder / "run.json", json.dumps(run.info, indent=2) + "\n")
    atomic_write(folder / "history.csv", run.history.to_csv())
    atomic_write(folder / "metrics.json", json.dumps(run.metrics, indent=2) + "\n")
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


def _check_classes(pre: Preprocessor) -> None:
    """A classifier's classes are distinct as text (labels are matched, and columns named, by their
    spelling: ``1`` and ``"1"`` are one class); a forged list that repeats one is refused."""
    if pre.task != "classification":
        return
    import pandas as pd

    from torchwork.data.preprocess import as_text

    spelled = as_text(pd.Series(pre.target.classes, dtype=object)).tolist()
    repeated = sorted({str(c) for c in spelled if spelled.count(c) > 1})
    if repeated:
        raise ValueError(f"its classes repeat {', '.join(map(repr, repeated))[:80]}: each class is listed once")


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
        from torchwork.files.integrity import verify_folder

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
        _check_classes(pre)
        baselines = Baselines.from_json(pre, meta["baselines"])
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise InputError(f"{path}: not a torchwork run folder ({one_line(exc, None, first_line=False)})") from None
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
        if verify_key is not None:  # never a silent pass: an unfinished run has no signature to check
            raise InputError(f"{path}: an unfinished run is not signed; --verify-key checks a finished run")
        return _partial_summary(partial_path(run))
    if verify_key is not None:
        from torchwork.files.integrity import verify_folder

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
        best = fit.get("best_epoch")
        best_row = next((row for row in rows if row.get("epoch") == best), None)
        summary["checkpoint"] = {
            "path": str(ckpt), "epochs_done": fit["epoch"], "steps": fit["step"], "batch": fit["batch"],
            "finished_training": bool(extra.get("finished")), "last": rows[-1] if rows else None,
            "best_epoch": best, "best_val_loss": best_row.get("val_loss") if best_row else None,
        }  # fmt: skip
    return summary


# --------------------------------------------------------------------------- what a run records
def versions() -> dict[str, str]:
    return {
        "torchwork": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def file_digest(path: Path) -> str:
    """The SHA-256 of a data file; of a folder (of Parquet files), over each file's name and SHA-256."""
    if path.is_file():
        return sha256_file(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".parquet", ".pq"))
    return hashlib.sha256(json.dumps([[p.name, sha256_file(p)] for p in files]).encode()).hexdigest()


def describe_data(config: TrainConfig, data: Any, prepared: Prepared) -> dict[str, Any]:
    source = data if data is not None else config.data
    if prepared.stream is not None:  # a file or a folder of files, streamed
        path = Path(prepared.stream.source.name)
        return {"source": str(path.resolve()), "sha256": file_digest(path), "rows": prepared.stream.source.rows,
                "rows_used": sum(prepared.stream.sizes.values()), "dropped": prepared.dropped,
                "filled": prepared.filled, "streamed": True}  # fmt: skip
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        info: dict[str, Any] = {"source": str(path.resolve()), "sha256": sha256_file(path)}
    else:
        info = {"source": f"<{type(source).__name__}>", "sha256": frame_digest(prepared.table.frame)}
    info.update(rows=len(prepared.table.frame), rows_used=len(prepared.rows), dropped=prepared.dropped,
                filled=prepared.filled)  # fmt: skip
    return info


def describe(prepared: Prepared) -> list[str]:
    """What the data turned out to be, one line each: the task, each column's kind, what was dropped or filled."""
    pre = prepared.pre
    target = ", ".join(pre.target_names)
    if pre.task == "classification":
        lines = [f"task: classification of {target!r} ({len(pre.target.classes)} classes)"]
    else:
        lines = [f"task: regression of {target}"]
    kinds = ", ".join(f"{c.name} {c.kind}" + ("" if c.reason == "numbers" else f" ({c.reason})") for c in pre.columns)
    lines.append(f"columns: {kinds}")
    if prepared.dropped.get("missing_target"):
        lines.append(f"dropped {prepared.dropped['missing_target']} rows with a missing target")
    if prepared.dropped.get("missing_value"):
        lines.append(f"dropped {prepared.dropped['missing_value']} rows with missing values (--drop-missing)")
    if prepared.filled:
        lines.append("filled missing values: " + ", ".join(f"{c} {n}" for c, n in prepared.filled.items()))
    return lines + [f"note: {n}" for n in prepared.notes]


def as_run(
    config: TrainConfig, prepared: Prepared, data_info: dict[str, Any], fitted: Any, resumed: bool, processes: int,
    group: Group | None = None,
) -> Run:  # fmt: skip
    info = {
        "format": RUN_FORMAT,
        "data": data_info,
        "split": {p: prepared.rows_in(p) for p in PARTS},
        "device": fitted.device,
        "threads": fitted.threads,
        "calibration": fitted.calibration,
        "processes": processes,
        "epochs_run": fitted.epochs_run,
        "stopped_early": fitted.stopped_early,
        "best_epoch": fitted.best_epoch,
        "kept_start": fitted.kept_start,
        "seconds": sum(fitted.history["seconds"]) if resumed else fitted.seconds,
        "finished": _now(),
        "notes": fitted.notes,
        "versions": versions(),
    }
    if prepared.stream is not None:  # a pass over the whole table: rank 0 makes it, every rank gets the metrics
        metrics = on_main(group, lambda: evaluate(fitted.model, fitted.baselines, prepared))
        trees: Trees | None = fit_trees(config, prepared)  # skipped, with the reason
    else:  # the trees on rank 0 alone (it writes the run); the other ranks' metrics leave them out
        trees = fit_trees(config, prepared) if group is None or group.main else None
        metrics = evaluate(fitted.model, fitted.baselines, prepared, trees)
    if trees is not None:
        info[TREES] = trees.record()
        if trees.skipped:
            info["notes"] = [*info["notes"], trees.skipped]
    meta = {
        "format": MODEL_FORMAT,
        "task": prepared.pre.task,
        "architecture": fitted.spec,
        "parameters": count_parameters(fitted.model),
        "preprocessing": prepared.pre.to_json(),
        "baselines": fitted.baselines.to_json(),
        "dtype": "float32",
        "weights": "model.safetensors",
        "trained_on": fitted.device,
        "versions": versions(),
    }
    return Run(fitted.model, prepared.pre, fitted.baselines, config.to_dict(), fitted.history, metrics, info, meta)


# ----------------------------------------------------------------------------- where a run goes
# What torchwork writes in a run folder (top-level names), and nothing else.
OURS = {"config.json", "run.json", "model.json", "model.safetensors", "history.csv", "metrics.json", "report.html",
        "manifest.json", "signature.sig", "plots", "checkpoints", "tensorboard", OWNER}  # fmt: skip


def check_name(out: Path) -> None:
    if out.name in ("", ".", "..") or str(out).strip() == "":
        raise InputError(f"--out {str(out)!r}: give a folder name for the run (for example runs/my-run)")


def default_out(data: str | None) -> Path:
    """``runs/<data file's stem>-<time>`` (a free variant is chosen when the run is claimed)."""
    stem = Path(data).stem if data else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False


def replaceable(out: Path) -> None:
    """Refuse to replace ``out`` unless it is a finished torchwork run holding nothing else."""
    if out.is_symlink() or not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; --overwrite replaces only torchwork runs")
    if not (out / MANIFEST).is_file():
        raise InputError(f"{out}: is not a torchwork run (no {MANIFEST}); --overwrite replaces only runs, not folders")
    try:
        extra = unlisted_files(out)
    except IntegrityError:
        raise InputError(f"{out}: its {MANIFEST} is damaged; --overwrite replaces only whole torchwork runs") from None
    if extra:
        shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise InputError(f"{out}: holds files torchwork did not write ({shown}); not replaced: move them first")


def check_out(out: Path, overwrite: bool, data: str | None, unique: bool = False) -> None:
    """Everything that can be said about ``out`` before any data is read."""
    check_name(out)
    for folder in (out, partial_path(out)):
        if data is not None and folder.exists() and _is_inside(Path(data), folder):
            raise InputError(f"{out}: the data file {data} is inside it; a run folder never holds its data")
    if unique:
        return
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise InputError(f"{out}: exists; pass --overwrite to replace it")
        replaceable(out)
    partial = partial_path(out)
    if partial.exists() or partial.is_symlink():
        _check_partial(partial, out, overwrite)


def _check_partial(partial: Path, out: Path, overwrite: bool) -> None:
    if partial.is_symlink() or not partial.is_dir():
        raise InputError(
            f"{partial}: exists and is not a folder torchwork made; remove it yourself if it is not needed"
        )
    if is_locked(partial):
        raise BusyError(f"{partial}: being written by {holder(partial)}; choose another --out or wait")
    if not overwrite:
        raise InputError(
            f"{partial}: holds an unfinished run; continue it with 'torchwork resume {out}' "
            "or pass --overwrite to start again"
        )
    foreign = sorted(p.name for p in partial.iterdir() if p.name not in OURS)
    if foreign:
        raise InputError(f"{partial}: holds files torchwork did not write ({', '.join(foreign[:5])}); not removed")


def claim_run(out: Path, overwrite: bool, unique: bool) -> tuple[Path, Lock]:
    """Create and lock ``out.partial`` (or, with ``unique``, the first free ``out-N.partial``)."""
    for n in range(1, 1000 if unique else 2):
        candidate = out if n == 1 else out.with_name(f"{out.name}-{n}")
        if unique and (candidate.exists() or candidate.is_symlink()):
            continue
        partial = partial_path(candidate)
        try:
            return candidate, claim(partial)
        except FileExistsError:
            if unique:
                continue
            _check_partial(partial, candidate, overwrite)  # raises unless a stale run may be removed
            stale = lock(partial)
            shutil.rmtree(partial)
            stale.release()
            return candidate, claim(partial)
    raise OutputError(f"{out}: no free folder name near it")


def move_into_place(partial: Path, out: Path, overwrite: bool) -> None:
    """Move the finished run to ``out``: never over something that appeared; swapped with an old run."""
    (partial / OWNER).unlink(missing_ok=True)
    try:
        if not (out.exists() or out.is_symlink()):
            try:
                move_noreplace(partial, out)
            except FileExistsError:
                raise OutputError(
                    f"{out}: appeared while the run was trained; the finished run is kept in {partial} "
                    f"(move {out} away, then 'torchwork resume {out}' moves it into place)"
                ) from None
        else:
            if not overwrite:
                raise OutputError(f"{out}: appeared while the run was trained; the finished run is kept in {partial}")
            replaceable(out)  # still a torchwork run: it may have changed while this one trained
            if exchange(partial, out):
                old = partial  # the old run now lives under the partial name
            else:
                old = out.with_name(f"{out.name}.replaced-{os.getpid()}")
                os.rename(out, old)
                move_noreplace(partial, out)
            fsync_dir(out.parent)
            try:
                replaceable(old)  # what is removed is a whole torchwork run, and only that
            except InputError:  # someone added a file to the old run meanwhile: keep it, under another name
                os.rename(old, out.with_name(f"{out.name}.replaced-{os.getpid()}"))
            else:
                shutil.rmtree(old)
        fsync_dir(out.parent)
    except OSError as exc:
        raise OutputError(f"cannot move the finished run {partial} to {out}: {exc.strerror or exc}") from None
