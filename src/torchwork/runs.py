"""Run folders: train into one, load one back, predict and evaluate with it, resume one.

A run is trained into ``RUN_DIR.partial`` (its configuration first, then checkpoints) and
renamed to ``RUN_DIR`` only when every file is written, so ``RUN_DIR`` is never
half-written. A killed or interrupted run stays in ``RUN_DIR.partial`` for
``torchwork resume RUN_DIR``. The finished folder holds:

- ``config.json``: the resolved configuration, defaults included;
- ``run.json``: the data (path, SHA-256, rows), the split, device, epochs, time, versions;
- ``model.safetensors`` and ``model.json`` (architecture and its arguments, features and
  their order, target, scalers fitted on the training split, the least-squares baseline);
- ``history.csv``, ``metrics.json``, ``plots/*.png``, ``report.html``;
- ``checkpoints/last.safetensors`` (the last checkpoint) and ``tensorboard/`` if enabled;
- ``manifest.json``: the SHA-256 of every file, checked before anything is loaded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork import __version__
from torchwork.callbacks import Callback, EarlyStopping, Progress, TensorBoard
from torchwork.checkpoint import Checkpointer, load_checkpoint
from torchwork.config import TrainConfig
from torchwork.errors import InputError, IntegrityError, TrainingDiverged, TrainingInterrupted, UnsafeFileError
from torchwork.files import MANIFEST, atomic_write, ensure_dir, sha256_file, verify_manifest, write_manifest
from torchwork.history import History
from torchwork.metrics import LeastSquares, regression_metrics
from torchwork.models import build_model, count_parameters
from torchwork.persistence import check_compatible
from torchwork.safeload import load_weights, save_weights_bytes
from torchwork.scaling import Standardizer
from torchwork.tables import Table, check_schema, read_table, select
from torchwork.workflow import PARTS, Prepared, architecture, build, make_trainer, predict_raw, prepare

MODEL_FORMAT = "torchwork-model/1"
RUN_FORMAT = "torchwork-run/1"
CHECKPOINT = Path("checkpoints") / "last.safetensors"
REQUIRED = ("config.json", "run.json", "model.json", "model.safetensors", "history.csv", "metrics.json")


def partial_path(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def versions() -> dict[str, str]:
    return {
        "torchwork": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class Run:
    """A trained model with everything needed to use it: scalers, columns, metrics, history."""

    model: nn.Module
    features: list[str]
    target: list[str]
    x_scaler: Standardizer
    y_scaler: Standardizer
    config: dict[str, Any]
    history: History
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def _select(self, data: Any, *, labelled: bool, drop_missing: bool, allow_extra: bool) -> tuple[Table, Any]:
        table = data if isinstance(data, Table) else read_table(data)
        check_schema(table, self.features, self.target, allow_extra=allow_extra)
        if labelled:
            missing = [t for t in self.target if t not in table.frame.columns]
            if missing:
                raise InputError(
                    f"{table.source}: no target column {', '.join(map(repr, missing))} to evaluate against"
                )
        chosen = select(table, self.target if labelled else None, self.features, drop_missing=drop_missing)
        return table, chosen

    def predict(self, data: Any, *, drop_missing: bool = False, allow_extra: bool = False) -> np.ndarray:
        """Predictions (n, targets) in the target's units for rows with the model's feature columns."""
        _, chosen = self._select(data, labelled=False, drop_missing=drop_missing, allow_extra=allow_extra)
        return predict_raw(self.model, chosen.X, self.x_scaler, self.y_scaler)

    def predict_frame(
        self, data: Any, *, column: str | None = None, drop_missing: bool = False, allow_extra: bool = False
    ) -> tuple[Any, int]:
        """The input rows with a prediction column added (and how many rows had missing values)."""
        table, chosen = self._select(data, labelled=False, drop_missing=drop_missing, allow_extra=allow_extra)
        preds = predict_raw(self.model, chosen.X, self.x_scaler, self.y_scaler)
        frame = table.frame.copy()
        if len(self.target) == 1:
            names = [column or "prediction"]
        else:  # one column per target
            names = [f"{column}_{t}" if column else f"{t}_pred" for t in self.target]
        for j, name in enumerate(names):
            if name in frame.columns:
                raise InputError(f"{table.source}: already has a column {name!r}; choose another with --column")
            full = np.full(len(frame), np.nan)
            full[chosen.rows] = preds[:, j]
            frame[name] = full
        return frame, chosen.dropped

    def evaluate(self, data: Any, *, drop_missing: bool = False, allow_extra: bool = True) -> dict[str, Any]:
        """Metrics of the model, and of the run's least-squares line, on labelled rows."""
        _, chosen = self._select(data, labelled=True, drop_missing=drop_missing, allow_extra=allow_extra)
        preds = predict_raw(self.model, chosen.X, self.x_scaler, self.y_scaler)
        result = {
            "rows": len(chosen.X),
            "dropped": chosen.dropped,
            "model": regression_metrics(chosen.y, preds),
        }
        baseline = self.meta.get("baseline")
        if baseline:
            ls = LeastSquares()
            ls.coef_, ls.intercept_ = np.asarray(baseline["coef"]), np.asarray(baseline["intercept"])
            result["least_squares"] = regression_metrics(chosen.y, ls.predict(chosen.X))
        return result


# ---------------------------------------------------------------- training
def train(
    config: TrainConfig,
    data: Any = None,
    out: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    verbose: bool = True,
    echo: Callable[[str], Any] | None = None,
) -> Run:
    """Train as ``config`` says, on ``data`` (or ``config.data``), into the run folder ``out``.

    ``out=None`` trains in memory and writes nothing (no checkpoints). Every input is
    checked before any folder is made; a failure leaves no run folder behind.
    """
    config = config.validate()
    if data is None and config.data is not None:  # recorded absolute: resume and export work from anywhere
        config = config.updated({"data": str(Path(config.data).resolve())}, source="config")
    echo = echo or (lambda text: print(text, file=sys.stderr, flush=True))
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _check_out(out_path, overwrite)
    prepared = prepare(config, data)
    if prepared.data.dropped:
        echo(f"dropped {prepared.data.dropped} rows with missing values (of {len(prepared.table.frame)})")
    data_info = _data_info(config, data, prepared)
    if out_path is None:
        return _fit(config, prepared, data_info, None, verbose, echo)
    partial = partial_path(out_path)
    if partial.exists():
        shutil.rmtree(partial)  # _check_out allowed it: --overwrite
    ensure_dir(partial)
    try:
        atomic_write(partial / "config.json", config.to_json())
        run = _fit(config, prepared, data_info, partial, verbose, echo)
        return _finish(run, prepared, partial, out_path)
    except BaseException as exc:
        _after_failure(exc, partial, out_path, from_file=data is None)
        raise


def resume(
    out: str | os.PathLike[str],
    data: Any = None,
    *,
    trust_model_code: bool = False,
    verbose: bool = True,
    echo: Callable[[str], Any] | None = None,
) -> Run:
    """Continue the unfinished run in ``out.partial`` from its last checkpoint.

    The data is the run's data file, checked against its SHA-256; a run trained from a
    DataFrame or an array needs the same ``data`` again (checked the same way). A run of
    your own model class needs ``trust_model_code=True``: resuming imports that class.
    """
    echo = echo or (lambda text: print(text, file=sys.stderr, flush=True))
    out_path = Path(out)
    partial = partial_path(out_path)
    if not partial.is_dir():
        if (out_path / MANIFEST).exists():
            raise InputError(f"{out_path}: this run is complete; nothing to resume")
        raise InputError(f"{partial}: no unfinished run to resume")
    ckpt = partial / CHECKPOINT
    if ckpt.exists():
        state, extra = load_checkpoint(ckpt)
        config = TrainConfig().updated(extra["config"], source=str(ckpt))
        data_info = extra["data"]
    else:
        config_file = partial / "config.json"
        try:
            config = TrainConfig().updated(json.loads(config_file.read_text()), source=str(config_file))
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{config_file}: cannot be read ({exc}); start again with --overwrite") from None
        state, data_info = None, None
        echo(f"{partial}: no checkpoint yet; starting the run again from the beginning")
    config = config.validate()
    if ":" in config.model and not trust_model_code:
        raise UnsafeFileError(
            f"{partial}: the run's model is the class {config.model!r}; resuming imports it, which runs that "
            "module's code: pass --trust-model-code (trust_model_code=True) if you trust it"
        )
    if data is None:
        source = config.data
        if source is None:
            raise InputError(
                f"{partial}: this run was trained from in-memory data; resume it in Python with "
                "torchwork.resume(RUN_DIR, data=<the same data>)"
            )
        if not Path(source).is_file():
            raise InputError(f"{partial}: its data file {source} is gone; a run resumes only from the same data")
        if data_info is not None and sha256_file(source) != data_info["sha256"]:
            raise InputError(f"{source}: changed since the run started (SHA-256 differs); cannot resume exactly")
    prepared = prepare(config, data)
    if (
        data is not None
        and data_info is not None
        and _data_info(config, data, prepared)["sha256"] != data_info["sha256"]
    ):
        raise InputError("the data given to resume is not the data the run started with (SHA-256 differs)")
    data_info = data_info or _data_info(config, data, prepared)
    try:
        run = _fit(config, prepared, data_info, partial, verbose, echo, resume_state=state)
        return _finish(run, prepared, partial, out_path)
    except BaseException as exc:
        _after_failure(exc, partial, out_path, keep=True, from_file=data is None)
        raise


def _check_out(out: Path, overwrite: bool) -> None:
    partial = partial_path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: exists; pass --overwrite to replace it")
    if partial.exists() and not overwrite:
        raise InputError(
            f"{partial}: holds an unfinished run; continue it with 'torchwork resume {out}' "
            "or pass --overwrite to start again"
        )


def _after_failure(exc: BaseException, partial: Path, out: Path, keep: bool = False, from_file: bool = True) -> None:
    """Keep a partial run that can be resumed; remove one that cannot."""
    has_checkpoint = (partial / CHECKPOINT).exists()
    if isinstance(exc, TrainingInterrupted):
        written = f"a checkpoint is in {partial / CHECKPOINT}" if has_checkpoint else "no checkpoint"
        how = f"torchwork resume {out}" if from_file else f"torchwork.resume({str(out)!r}, data=<the same data>)"
        exc.args = (f"{exc}; {written}; continue with: {how}",)
    elif isinstance(exc, TrainingDiverged) and "checkpoint" not in str(exc):
        exc.args = (
            f"{exc}; "
            + (
                f"the last good checkpoint is {partial / CHECKPOINT}" if has_checkpoint else "no checkpoint was written"
            ),
        )
    if not (keep or has_checkpoint or isinstance(exc, TrainingInterrupted)):
        shutil.rmtree(partial, ignore_errors=True)


def _data_info(config: TrainConfig, data: Any, prepared: Prepared) -> dict[str, Any]:
    source = data if data is not None else config.data
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        info: dict[str, Any] = {"source": str(path.resolve()), "sha256": sha256_file(path)}
    else:
        import hashlib

        digest = hashlib.sha256(prepared.data.X.tobytes())
        digest.update(prepared.data.y.tobytes() if prepared.data.y is not None else b"")
        info = {"source": f"<{type(source).__name__}>", "sha256": digest.hexdigest()}
    info.update(rows=len(prepared.table.frame), rows_used=len(prepared.data.X), dropped=prepared.data.dropped)
    return info


def _fit(
    config: TrainConfig,
    prepared: Prepared,
    data_info: dict[str, Any],
    folder: Path | None,
    verbose: bool,
    echo: Callable[[str], Any],
    resume_state: dict[str, Any] | None = None,
) -> Run:
    X = prepared.data.X
    assert prepared.data.y is not None
    spec = architecture(config, X.shape[1], prepared.data.y.shape[1])
    model = build(spec, config.seed)
    callbacks: list[Callback] = []
    if verbose:
        callbacks.append(Progress(config.epochs))
    checkpointer = None
    if folder is not None:
        if config.tensorboard:
            callbacks.append(TensorBoard(str(folder / "tensorboard")))
        extra = {"config": config.to_dict(), "data": data_info}
        checkpointer = Checkpointer(folder / CHECKPOINT, config.checkpoint_every, config.checkpoint_every_steps, extra)
        if resume_state is not None:  # the checkpoint resumed from is the last good one until a newer is written
            checkpointer.saved = (resume_state["fit"]["epoch"], resume_state["fit"]["step"])
        callbacks.append(checkpointer)
    trainer = make_trainer(config, callbacks, handle_signals=folder is not None)
    started = time.perf_counter()
    try:
        history = trainer.fit(model, prepared.tensors("train"), prepared.tensors("val"), resume=resume_state)
    except TrainingDiverged as exc:
        if checkpointer is not None and "checkpoint" not in str(exc):
            raise TrainingDiverged(f"{exc}; {checkpointer.good()}") from None
        raise
    seconds = time.perf_counter() - started
    es = next((cb for cb in trainer.callbacks_ if isinstance(cb, EarlyStopping)), None)
    info = {
        "format": RUN_FORMAT,
        "data": data_info,
        "split": {p: len(prepared.parts[p]) for p in PARTS},
        "device": str(trainer.device_),
        "epochs_run": trainer.state.epoch,
        "stopped_early": bool(trainer.state.stop),
        "best_epoch": es.best_epoch if es is not None and es.best_epoch >= 0 else None,
        "seconds": sum(history["seconds"]) if resume_state is not None else seconds,
        "finished": _now(),
        "versions": versions(),
    }
    model.cpu()
    metrics, baseline = _evaluate_parts(model, prepared)
    meta = {
        "format": MODEL_FORMAT,
        "architecture": spec,
        "parameters": count_parameters(model),
        "features": prepared.data.features,
        "target": prepared.data.target,
        "scalers": {"x": prepared.x_scaler.to_json(), "y": prepared.y_scaler.to_json()},
        "baseline": baseline,
        "dtype": "float32",
        "weights": "model.safetensors",
        "trained_on": str(trainer.device_),
        "versions": versions(),
    }
    return Run(model, prepared.data.features, prepared.data.target, prepared.x_scaler, prepared.y_scaler,
               config.to_dict(), history, metrics, info, meta)  # fmt: skip


def _evaluate_parts(model: nn.Module, prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics per split for the model and for closed-form least squares fitted on train."""
    X_train, y_train = prepared.raw("train")
    ls = LeastSquares().fit(X_train, y_train)
    metrics: dict[str, Any] = {"model": {}, "least_squares": {}, "rows": {}}
    for part in PARTS:
        if len(prepared.parts[part]) == 0:
            continue
        X, y = prepared.raw(part)
        metrics["model"][part] = regression_metrics(y, predict_raw(model, X, prepared.x_scaler, prepared.y_scaler))
        metrics["least_squares"][part] = regression_metrics(y, ls.predict(X))
        metrics["rows"][part] = len(X)
    baseline = {"coef": ls.coef_.tolist(), "intercept": ls.intercept_.tolist()}
    return metrics, baseline


def _plots(run: Run, prepared: Prepared) -> dict[str, bytes]:
    from torchwork.plots import plot_loss_curves, plot_pred_vs_actual, plot_predictions, plot_residuals

    h = run.history
    plots = {
        "Training and validation loss": plot_loss_curves(
            h["epoch"],
            h["train_loss"],
            h["val_loss"],
            title="Training and validation loss curves",
            test_label="Validation loss",
            log_scale=True,
            best_epoch=run.info.get("best_epoch"),
        ),
    }
    part = next(p for p in ("test", "val", "train") if len(prepared.parts[p]))
    X, y = prepared.raw(part)
    preds = predict_raw(run.model, X, run.x_scaler, run.y_scaler)
    plots[f"Predicted vs actual ({part} split)"] = plot_pred_vs_actual(y, preds, title=f"Predicted vs actual ({part})")
    plots[f"Residuals ({part} split)"] = plot_residuals(y, preds, title=f"Residuals ({part})")
    if X.shape[1] == 1 and y.shape[1] == 1:
        X_train, y_train = prepared.raw("train")
        plots["Predictions (the tutorial's plot)"] = plot_predictions(X_train, y_train, X, y, preds)
    return plots


PLOT_FILES = {
    "Training and validation loss": "loss.png",
    "Predicted vs actual": "pred_vs_actual.png",
    "Residuals": "residuals.png",
    "Predictions (the tutorial's plot)": "predictions.png",
}


def _finish(run: Run, prepared: Prepared, partial: Path, out: Path) -> Run:
    """Write every file of the run into ``partial``, then the manifest, then move it to ``out``."""
    from torchwork.report import render_report

    atomic_write(partial / "model.safetensors", save_weights_bytes(run.model.state_dict()))
    atomic_write(partial / "model.json", json.dumps(run.meta, indent=2) + "\n")
    atomic_write(partial / "run.json", json.dumps(run.info, indent=2) + "\n")
    atomic_write(partial / "history.csv", run.history.to_csv())
    atomic_write(partial / "metrics.json", json.dumps(run.metrics, indent=2) + "\n")
    plots = _plots(run, prepared)
    ensure_dir(partial / "plots")
    for caption, png in plots.items():
        name = next(f for prefix, f in PLOT_FILES.items() if caption.startswith(prefix))
        atomic_write(partial / "plots" / name, png)
    html = render_report(
        title=f"torchwork run {out.name}", config=run.config, info=run.info, metrics=run.metrics,
        model_meta=run.meta, plots=plots,
    )  # fmt: skip
    atomic_write(partial / "report.html", html)
    write_manifest(partial)
    _move_into_place(partial, out)
    run.path = out
    return run


def _move_into_place(partial: Path, out: Path) -> None:
    from torchwork.files import OutputError, fsync_dir

    old = None
    try:
        if out.exists():  # --overwrite: swap, then remove the old run
            old = out.with_name(f"{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(partial, out)
        fsync_dir(out.parent)
    except OSError as exc:
        raise OutputError(f"cannot move the finished run {partial} to {out}: {exc.strerror or exc}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------- loading
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
        spec, features, target = meta["architecture"], list(meta["features"]), list(meta["target"])
        x_scaler = Standardizer.from_json(meta["scalers"]["x"])
        y_scaler = Standardizer.from_json(meta["scalers"]["y"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a torchwork run folder ({exc})") from None
    model = build_model(spec, trust_code=trust_model_code)
    weights = load_weights(path / "model.safetensors", safetensors_only=True).tensors
    check_compatible(model, weights, str(path / "model.safetensors"))
    model.load_state_dict(weights)
    model.eval()
    return Run(model, features, target, x_scaler, y_scaler, config, history, metrics, info, meta, path)


def write_predictions(frame: Any, out: str | os.PathLike[str]) -> Path:
    """Write a predictions table to ``.csv`` or ``.parquet``, atomically."""
    import io

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return atomic_write(out, buf.getvalue())
    if suffix not in (".csv", ".tsv", ".txt"):
        raise InputError(f"--out {out}: write .csv or .parquet")
    return atomic_write(out, frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ","))


def read_run_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a run folder holds, for ``torchwork inspect RUN_DIR``: checked, never built or imported."""
    from torchwork.inspection import describe_weights

    path = Path(path)
    verify_manifest(path, REQUIRED)
    try:
        docs = {name: json.loads((path / f"{name}.json").read_text()) for name in ("model", "run", "metrics", "config")}
    except ValueError as exc:
        raise InputError(f"{path}: not a torchwork run folder ({exc})") from None
    weights = load_weights(path / "model.safetensors", safetensors_only=True)
    return {"path": str(path), **docs, "weights": describe_weights(path / "model.safetensors", weights)}


def format_run_summary(summary: dict[str, Any]) -> str:
    from torchwork.inspection import format_description

    meta, info, metrics = summary["model"], summary["run"], summary["metrics"]
    arch = meta["architecture"]
    lines = [
        f"run:        {summary['path']}",
        f"model:      {arch.get('name') or arch.get('class')} {json.dumps(arch.get('args', {}))}",
        f"parameters: {meta['parameters']}",
        f"features:   {', '.join(meta['features'])}",
        f"target:     {', '.join(meta['target'])}",
        f"data:       {info['data']['source']} ({info['data']['rows_used']} rows, "
        f"sha256 {info['data']['sha256'][:16]}...)",
        "split:      " + ", ".join(f"{k} {v}" for k, v in info["split"].items()),
        f"trained:    {info['epochs_run']} epochs on {info['device']}"
        + (f", best epoch {info['best_epoch']}" if info.get("best_epoch") is not None else "")
        + (" (stopped early)" if info.get("stopped_early") else ""),
        "versions:   " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"metrics:    {'split':<8} {'MAE':<12} {'RMSE':<12} {'R²':<12} least squares: MAE / RMSE / R²",
    ]
    for part, m in metrics["model"].items():
        b = metrics["least_squares"][part]
        lines.append(
            f"            {part:<8} {m['mae']:<12.6g} {m['rmse']:<12.6g} {m['r2']:<12.6g} "
            f"{b['mae']:.6g} / {b['rmse']:.6g} / {b['r2']:.6g}"
        )
    lines.append("weights:")
    lines += ["  " + line for line in format_description(summary["weights"]).splitlines()]
    return "\n".join(lines)
