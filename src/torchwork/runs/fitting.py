"""Step two of the recipe: build the model (seeded, started from the baselines) and the
:class:`~torchwork.training.trainer.Trainer` the configuration describes, and train; or restore a finished fit."""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from torchwork.core.errors import InputError
from torchwork.data.preprocess import Preprocessor
from torchwork.files.weights import check_compatible
from torchwork.models.registry import build_model, importable, model_from, model_spec
from torchwork.runs.baselines import Baselines, fit_baselines
from torchwork.runs.config import TrainConfig
from torchwork.runs.preparing import Prepared
from torchwork.training.callbacks import Callback, EarlyStopping
from torchwork.training.history import History
from torchwork.training.losses import LOSSES
from torchwork.training.trainer import Trainer

MIN_PATIENCE_STEPS = 1000  # early stopping waits at least this many optimizer steps


def spec_for(config: TrainConfig, pre: Preprocessor) -> dict[str, Any]:
    """The model spec (a registered name or a class, and its arguments) the configuration asks for."""
    if config.model == "mlp":
        args = {"hidden": list(config.hidden), "activation": config.activation, "dropout": config.dropout,
                "categories": pre.cardinalities, "skip": config.warm_start}  # fmt: skip
        return model_spec("mlp", pre.n_numeric, pre.n_outputs, **args, **config.model_args)
    if config.model == "linear":
        return model_spec("linear", pre.n_numeric, pre.n_outputs, categories=pre.cardinalities, **config.model_args)
    if pre.encoding == "codes":
        return model_spec(config.model, pre.n_numeric, pre.n_outputs, categories=pre.cardinalities, **config.model_args)
    return model_spec(config.model, pre.n_inputs, pre.n_outputs, **config.model_args)


def build(config: TrainConfig, pre: Preprocessor, given: Any = None) -> tuple[nn.Module, dict[str, Any]]:
    """The model (initial weights from the seed) and its spec; ``given``: your class, factory or instance."""
    if given is None:
        spec = spec_for(config, pre)
        return build_model(spec, seed=config.seed), spec
    torch.manual_seed(config.seed)
    n_in = pre.n_numeric if pre.encoding == "codes" else pre.n_inputs
    args = {"categories": pre.cardinalities} if pre.encoding == "codes" else {}
    model, spec = model_from(given, n_in, pre.n_outputs, **args, **config.model_args)
    if not importable(given if not isinstance(given, nn.Module) else type(given)) or spec["args"] is None:
        how = "an instance (model=<a new instance>)" if spec["args"] is None else "the class (model=<it>)"
        path = spec.get("class") or spec.get("factory")
        warnings.warn(
            f"the model {path!r} cannot be rebuilt from the run folder alone: load the run with "
            f"torchwork.load_run(path, model=...) passing {how}", UserWarning, stacklevel=_your_frame(),
        )  # fmt: skip
    return model, spec


def _your_frame() -> int:
    """The ``stacklevel`` of the first caller outside torchwork (for a warning about your call)."""
    package = str(Path(__file__).resolve().parents[1])
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _try_inputs(model: nn.Module, prepared: Prepared) -> None:
    """Your model on two rows before training: a model that cannot take the inputs says so in one line."""
    X = torch.from_numpy(prepared.X[:2])
    try:
        with torch.no_grad():
            model.eval()(X)
    except Exception as exc:
        pre = prepared.pre
        raise InputError(
            f"your model could not take the inputs ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); it gets "
            f"float32 rows of {X.shape[1]} values: {pre.n_numeric} numeric (standardized, with missing indicators)"
            + (f", then {X.shape[1] - pre.n_numeric} one-hot category columns" if pre.encoding == "onehot" else "")
            + f"; outputs must be (n, {pre.n_outputs})"
        ) from None


def loss_for(config: TrainConfig, prepared: Prepared) -> tuple[str, dict[str, Any]]:
    """The loss and its options: ``auto`` is mse, or bce for two classes and cross_entropy for more."""
    pre = prepared.pre
    classification = pre.task == "classification"
    loss = config.loss if config.loss == "auto" else LOSSES.canonical(config.loss)
    if loss == "bce" and len(pre.target.classes) > 2:
        raise InputError(f"{config.where('loss')}: bce takes two classes; the target has {len(pre.target.classes)}")
    if loss == "auto":
        loss = ("bce" if pre.n_outputs == 1 else "cross_entropy") if classification else "mse"
    if classification and loss not in ("bce", "cross_entropy"):
        raise InputError(
            f"{config.where('loss')}: {loss!r} is a regression loss; a classifier takes bce or cross_entropy"
        )
    if not classification and loss in ("bce", "cross_entropy"):
        raise InputError(f"{config.where('loss')}: {loss!r} needs --task classification")
    options: dict[str, Any] = {}
    if config.class_weight is not None:
        if not classification:
            raise InputError(f"{config.where('class_weight')}: class weights need --task classification")
        train = prepared.truth[prepared.parts["train"]]
        counts = np.bincount(train, minlength=len(pre.target.classes)).astype(float)
        if isinstance(config.class_weight, dict):
            from torchwork.data.encoders import as_text

            labels = as_text(pd.Series(pre.target.classes)).tolist()
            options["weight"] = [float(config.class_weight.get(label, 1.0)) for label in labels]
        elif loss == "bce":
            options["pos_weight"] = [float(counts[0] / max(counts[1], 1))]
        else:
            options["weight"] = (len(train) / (len(counts) * np.maximum(counts, 1))).tolist()
    return loss, options


def resolve(config: TrainConfig, prepared: Prepared) -> TrainConfig:
    """``config`` with every ``auto`` made concrete (loss, optimizer, rate, batch size): what the run records."""
    loss, _ = loss_for(config, prepared)
    values: dict[str, Any] = {"loss": loss, "optimizer": config.resolved_optimizer(), "lr": config.resolved_lr()}
    batch_size = config.resolved_batch_size()
    if prepared.stream is not None and (batch_size is None or values["optimizer"] == "lbfgs"):
        if config.optimizer == "lbfgs" or (config.batch_size is None and config.optimizer != "auto"):
            raise InputError(f"{config.where('optimizer')}: lbfgs needs every row at once; streamed data trains "
                             "in mini-batches (adam, sgd, adamw, rmsprop)")  # fmt: skip
        values["optimizer"] = "adam"  # the linear model too: it starts from least squares, solved exactly
        values["lr"] = config.lr if config.lr is not None else 1e-3
        batch_size = config.batch_size or 64
    values["batch_size"] = batch_size if batch_size is not None else max(1, prepared.size("train"))
    resolved = config.updated(values, source="resolved")
    resolved.sources = dict(config.sources)  # where each value came from stays as given
    return resolved


def trainer_for(
    config: TrainConfig, prepared: Prepared, callbacks: Sequence[Callback] = (), handle_signals: bool = False
) -> Trainer:
    """The Trainer the configuration describes (options already checked by the config)."""
    loss, loss_options = loss_for(config, prepared)
    options = dict(config.optimizer_args)
    if config.weight_decay:
        options["weight_decay"] = config.weight_decay
    batch_size = config.resolved_batch_size()
    early_stopping = None
    if config.early_stopping:
        rows = prepared.rows_in("train")
        steps_per_epoch = max(1, math.ceil(rows / batch_size)) if batch_size else 1
        patience = max(config.early_stopping, math.ceil(MIN_PATIENCE_STEPS / steps_per_epoch))
        if config.resolved_optimizer() == "lbfgs":  # each step is a full quasi-Newton solve
            patience = config.early_stopping
        early_stopping = EarlyStopping(patience, min_delta_rel=1e-3)
    return Trainer(
        loss=loss, loss_options=loss_options, optimizer=config.resolved_optimizer(), lr=config.resolved_lr(),
        optimizer_options=options, epochs=config.epochs, batch_size=batch_size, shuffle=config.shuffle,
        seed=config.seed, device=config.device, scheduler=config.scheduler, scheduler_options=config.scheduler_args,
        clip_grad=config.clip_grad, early_stopping=early_stopping, callbacks=callbacks, precision=config.precision,
        compile=config.compile, handle_signals=handle_signals,
    )  # fmt: skip


@dataclass
class Fitted:
    """A trained model, its baselines, and how its training went."""

    model: nn.Module
    spec: dict[str, Any]
    baselines: Baselines
    history: History
    epochs_run: int
    best_epoch: int | None
    stopped_early: bool
    device: str
    seconds: float
    notes: list[str] = field(default_factory=list)


def fit(
    config: TrainConfig,
    prepared: Prepared,
    *,
    callbacks: Sequence[Callback] = (),
    handle_signals: bool = False,
    resume: dict[str, Any] | None = None,
    given: Any = None,
) -> Fitted:
    """Fit the baselines, build the model (started from them), train it on the train split.

    Streamed data in a process group: each rank trains on its share of the row groups (see
    ``StreamBatches``).
    """
    from torchwork.training.distributed import current

    group = current()
    baselines = fit_baselines(prepared)
    model, spec = build(config, prepared.pre, given)
    if given is not None:
        _try_inputs(model, prepared)
    start_from = getattr(model, "start_from", None)
    if config.warm_start and callable(start_from) and (config.model != "mlp" or spec["args"].get("skip")):
        start_from(*baselines.linear_start(prepared.pre.n_outputs))
    trainer = trainer_for(config, prepared, callbacks, handle_signals)
    started = time.perf_counter()
    if prepared.stream is not None:
        batch_size = config.resolved_batch_size()
        assert batch_size is not None  # resolve() gave streamed data a batch size
        share = None if group is None else (group.rank, group.world_size)
        train: Any = prepared.stream.batches("train", batch_size, config.shuffle, config.seed, share)
        val: Any = prepared.stream.evaluation("val", share)
    else:
        train, val = prepared.tensors("train"), prepared.tensors("val")
    history = trainer.fit(model, train, val, resume=resume)
    seconds = time.perf_counter() - started
    last = trainer.last_fit
    assert last is not None
    es = trainer.early_stopping
    return Fitted(
        model=model.cpu().eval(), spec=spec, baselines=baselines, history=history, epochs_run=last.state.epoch,
        best_epoch=es.best_epoch if es is not None else None,
        stopped_early=bool(last.state.stop and last.state.epoch < config.epochs),
        device=str(last.device), seconds=seconds, notes=list(prepared.notes) + list(last.notes),
    )  # fmt: skip


def restore(
    config: TrainConfig,
    prepared: Prepared,
    state: dict[str, Any],
    extra: dict[str, Any],
    given: Any = None,
    source: str = "the checkpoint",
) -> Fitted:
    """The :class:`Fitted` of a finished fit from its final checkpoint (``source``), without training again."""
    baselines = fit_baselines(prepared)
    model, spec = build(config, prepared.pre, given)
    check_compatible(model, state["model"], source)  # one line naming the keys, not torch's traceback
    model.load_state_dict(state["model"])
    fit_state = state["fit"]
    stopping = next((v for k, v in state.get("callbacks", {}).items() if k.endswith(":EarlyStopping")), None)
    history = History(state.get("history", []))
    return Fitted(
        model=model.eval(), spec=spec, baselines=baselines, history=history, epochs_run=fit_state["epoch"],
        best_epoch=stopping.get("best_epoch") if stopping else None,
        stopped_early=bool(fit_state["stop"] and fit_state["epoch"] < config.epochs), device=extra.get("device", "cpu"),
        seconds=sum(history["seconds"]), notes=list(prepared.notes) + list(extra.get("notes", [])),
    )  # fmt: skip
