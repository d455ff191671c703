"""The recipe after the data is prepared: fit the baselines, build and train the model, evaluate.

Used by ``torchwork train``, :func:`torchwork.train` and the scikit-learn estimators (the data
is prepared by :mod:`~torchwork.runs.prepare`):

1. :class:`Baselines`: least squares for regression; logistic regression and the majority
   class for classification, fitted on the training rows (in memory or streamed), written as
   JSON and checked when read back;
2. :func:`fit`: build the model (seeded; the linear model and the MLP's linear path start from
   the baseline), build the :class:`~torchwork.training.trainer.Trainer` the configuration
   describes, and train; :func:`restore` rebuilds a finished fit from its checkpoint;
3. :func:`calibrate`: for classes, a temperature fitted on the validation rows' logits;
4. :func:`evaluate`: metrics on every split for the model and the baselines (of streamed data,
   in one more pass).
"""

from __future__ import annotations

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

from torchwork.core.errors import InputError, one_line
from torchwork.data.preprocess import Preprocessor
from torchwork.evaluation.baselines import (
    MAX_TREE_CATEGORIES,
    GradientBoostedTrees,
    LeastSquares,
    LogisticRegression,
    MajorityClass,
    ridge_on_validation,
    sklearn_missing,
)
from torchwork.evaluation.calibration import fit_temperature
from torchwork.evaluation.metrics import TREES, classification_metrics, regression_metrics
from torchwork.files.weights import check_compatible
from torchwork.models.registry import build_model, importable, model_from, model_spec
from torchwork.runs.config import TrainConfig
from torchwork.runs.prepare import PARTS, Prepared
from torchwork.runs.streamed import roc_auc_on_sample, stream_baselines
from torchwork.training.batching import predict
from torchwork.training.callbacks import Callback, EarlyStopping
from torchwork.training.components import LOSSES
from torchwork.training.loop import History
from torchwork.training.trainer import Trainer

# ------------------------------------------------------------------------------------ baselines
LOGISTIC_CS = (0.01, 0.1, 10.0, 100.0)  # the logistic start's other penalties (the baseline's C is 1)
LOGISTIC_CS_CELLS = 1 << 24  # training rows x design columns above which only C = 1 is fitted (each fit costs)


class Baselines:
    """The baselines fitted on the training rows' design matrix: least squares for regression;
    logistic regression and the majority class for classification."""

    def __init__(self, pre: Preprocessor, fitted: dict[str, Any], start: Any = None) -> None:
        self.pre, self.fitted = pre, fitted
        # The linear start, when a penalty chosen on the validation rows predicts them better than
        # the baseline's: ridge for a regression, another C for the logistic regression. Not a
        # baseline of the metrics: those stay the plain closed forms a reader knows.
        self.start = start

    @classmethod
    def fit(cls, prepared: Prepared) -> Baselines:
        pre, s = prepared.pre, prepared.parts["train"]
        if prepared.stream is not None:
            return cls(pre, stream_baselines(prepared.stream, prepared.X[s], prepared.y[s]))
        design = pre.design(prepared.X[s])
        if pre.task == "regression":
            ls = LeastSquares().fit(design, prepared.y[s])
            ridge = None
            if prepared.size("val"):
                v = prepared.parts["val"]
                val_design, val_y = pre.design(prepared.X[v]), prepared.y[v]
                ridge = ridge_on_validation(design, prepared.y[s], val_design, val_y)
                ols_mse = float(np.mean((ls.predict(val_design) - np.asarray(val_y, dtype=np.float64)) ** 2))
                if ridge is not None and not ridge.val_mse_ < ols_mse:
                    ridge = None
            return cls(pre, {"least_squares": ls}, ridge)
        n = len(pre.target.classes)
        lr = LogisticRegression().fit(design, prepared.y[s], n)
        start = None
        if prepared.size("val") and design.size <= LOGISTIC_CS_CELLS:
            v = prepared.parts["val"]
            val_design, truth = pre.design(prepared.X[v]), prepared.truth[v]

            def val_log_loss(model: LogisticRegression) -> float:
                proba = model.predict_proba(val_design)[np.arange(len(truth)), truth]
                return float(-np.mean(np.log(np.clip(proba, 1e-15, 1.0))))

            best = val_log_loss(lr)
            with warnings.catch_warnings():  # a strong or weak penalty may stop short of tol: still a start
                warnings.simplefilter("ignore", RuntimeWarning)
                for C in LOGISTIC_CS:
                    other = LogisticRegression(C=C).fit(design, prepared.y[s], n)
                    loss = val_log_loss(other)
                    if loss < best:
                        start, best = other, loss
        return cls(pre, {"logistic_regression": lr, "majority_class": MajorityClass().fit(prepared.y[s], n)},
                   start)  # fmt: skip

    def predictions(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Each baseline's predictions: target units (regression) or class probabilities."""
        design = self.pre.design(X)
        out = {}
        for name, model in self.fitted.items():
            if name == "least_squares":
                out[name] = self.pre.decode(model.predict(design))
            else:
                out[name] = model.predict_proba(design)
        return out

    def start_name(self) -> str:
        """What :meth:`linear_start` gives, for a person."""
        if isinstance(self.start, LeastSquares):
            return f"the ridge line, alpha {self.start.alpha_:.3g}, chosen on the validation rows"
        if isinstance(self.start, LogisticRegression):
            return f"the logistic regression with C {self.start.C:g}, chosen on the validation rows"
        return "the least-squares line" if "least_squares" in self.fitted else "the logistic regression"

    def linear_start(self, outputs: int) -> tuple[np.ndarray, np.ndarray]:
        """``(coef (p, outputs), intercept (outputs,))`` in the model's output space, to start from."""
        if "least_squares" in self.fitted:
            ls = self.start if self.start is not None else self.fitted["least_squares"]
            return np.asarray(ls.coef_).reshape(-1, outputs), np.asarray(ls.intercept_).reshape(outputs)
        lr = self.start if self.start is not None else self.fitted["logistic_regression"]
        coef, intercept = np.asarray(lr.coef_).T, np.asarray(lr.intercept_).reshape(-1)
        if outputs == coef.shape[1]:
            return coef, intercept
        if coef.shape[1] == 1 and outputs == 2:  # one logit to two: class 0 at zero
            return np.hstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
        full, bias = np.zeros((coef.shape[0], outputs)), np.full(outputs, -10.0)  # classes absent from training
        full[:, lr.classes_], bias[lr.classes_] = coef, intercept
        return full, bias

    def to_json(self) -> dict[str, Any]:
        return {name: model.to_json() for name, model in self.fitted.items()}

    @classmethod
    def from_json(cls, pre: Preprocessor, doc: dict[str, Any]) -> Baselines:
        kinds: dict[str, Any] = {
            "least_squares": LeastSquares,
            "logistic_regression": LogisticRegression,
            "majority_class": MajorityClass,
        }
        baselines = cls(pre, {name: kinds[name].from_json(value) for name, value in doc.items()})
        expected = {"least_squares"} if pre.task == "regression" else {"logistic_regression", "majority_class"}
        if set(baselines.fitted) != expected:
            raise ValueError(
                f"its baselines are {', '.join(sorted(baselines.fitted))}, not {', '.join(sorted(expected))}"
            )
        # one row of zeros through each: coefficients of the wrong shape fail here, in one line, not at predict
        outputs = len(pre.target.classes) if pre.task == "classification" else len(pre.target.names)
        try:
            with np.errstate(all="raise"):
                predictions = baselines.predictions(np.zeros((1, pre.n_inputs), dtype=np.float32))
        except FloatingPointError as exc:
            raise ValueError(f"its baselines overflow ({exc})") from None
        for name, out in predictions.items():
            if out.shape != (1, outputs) or not np.isfinite(out).all():
                raise ValueError(f"its {name} baseline gives {out.shape[1:]} finite outputs, not {outputs}")
        return baselines


def fit_baselines(prepared: Prepared) -> Baselines:
    """:meth:`Baselines.fit`; streamed data in a process group: rank 0 fits them (a pass over the
    training rows) and every rank gets them."""
    from torchwork.training.distributed import current, on_main

    group = current()
    if prepared.stream is None or group is None:
        return Baselines.fit(prepared)
    return Baselines(prepared.pre, on_main(group, lambda: Baselines.fit(prepared).fitted))


# ----------------------------------------------------------------------- gradient-boosted trees


def tree_inputs(pre: Preprocessor, X: np.ndarray) -> tuple[np.ndarray, list[bool]]:
    """The trees' inputs from encoded rows: the numeric block (values, date parts, missing
    indicators), then one column of codes per categorical column (one-hot blocks turned back into
    codes); and which columns are categorical (those of at most 255 codes: HistGradientBoosting's
    limit; a column with more is split as numbers)."""
    numeric = X[:, : pre.n_numeric].astype(np.float64)
    blocks, mask = [numeric], [False] * pre.n_numeric
    j = pre.n_numeric
    for cardinality in pre.cardinalities:
        if pre.encoding == "codes":
            codes = X[:, j].astype(np.float64)
            j += 1
        else:
            block = X[:, j : j + cardinality - 1]
            codes = np.where(block.any(axis=1), block.argmax(axis=1) + 1, 0).astype(np.float64)
            j += cardinality - 1
        blocks.append(codes.reshape(-1, 1))
        mask.append(cardinality <= MAX_TREE_CATEGORIES)
    return np.hstack(blocks), mask


@dataclass
class Trees:
    """The gradient-boosted trees fitted beside the baselines, or why they were not (``skipped``)."""

    model: GradientBoostedTrees | None
    skipped: str | None = None
    seconds: float = 0.0

    def predictions(self, pre: Preprocessor, X: np.ndarray) -> np.ndarray:
        assert self.model is not None
        A, _ = tree_inputs(pre, X)
        return self.model.predict_proba(A) if pre.task == "classification" else pre.decode(self.model.predict(A))

    def record(self) -> dict[str, Any]:
        """What ``run.json`` keeps of them."""
        if self.model is None:
            return {"skipped": self.skipped}
        import sklearn

        return {
            "seconds": round(self.seconds, 3),
            "iterations": self.model.n_iter_,
            "scikit_learn": sklearn.__version__,
        }


def fit_trees(config: TrainConfig, prepared: Prepared) -> Trees:
    """scikit-learn's HistGradientBoosting on the training rows (:class:`GradientBoostedTrees`);
    skipped, with the reason, without scikit-learn or on streamed data."""
    why = sklearn_missing()
    if why is None and prepared.stream is not None:
        why = "streamed data is not fitted in memory"
    if why is not None:
        return Trees(None, f"the gradient-boosted trees baseline was skipped: {why}")
    pre, s = prepared.pre, prepared.parts["train"]
    started = time.perf_counter()
    A, mask = tree_inputs(pre, prepared.X[s])
    model = GradientBoostedTrees(pre.task, mask, seed=config.seed)
    if pre.task == "regression":
        model.fit(A, prepared.y[s])
    else:
        model.fit(A, prepared.y[s], len(pre.target.classes))
    return Trees(model, seconds=time.perf_counter() - started)


# ------------------------------------------------------------------- the model and its training
CLASS_MIN_DELTA = 1e-3  # what a classifier's validation log loss must fall by to count as better


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
            f"your model could not take the inputs ({type(exc).__name__}: {one_line(exc, 200, first_line=False)}); "
            "it gets "
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
            from torchwork.data.preprocess import as_text

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
    stopping: list[Callback] = []
    if config.early_stopping:
        # Patience in epochs only. A floor of 1000 optimizer steps (167 epochs on a 350-row table)
        # was dropped: on the quality benchmark it ran 3 to 7 times the epochs on small tables and
        # found a better epoch on 1 split of 33 (the best epoch was the same on 31).
        patience = config.early_stopping
        # Classes: the validation log loss must also fall by CLASS_MIN_DELTA (nats) to count. On a
        # slice the model already separates it falls for ever, ever more slowly, as the logits grow:
        # a relative step alone never stops that, and the weights kept would be the most over-confident.
        absolute = CLASS_MIN_DELTA if prepared.pre.task == "classification" else 0.0
        stopping.append(EarlyStopping(patience, min_delta=absolute, min_delta_rel=1e-3))
    return Trainer(
        loss=loss, loss_options=loss_options, optimizer=config.resolved_optimizer(), lr=config.resolved_lr(),
        optimizer_options=options, epochs=config.epochs, batch_size=batch_size, shuffle=config.shuffle,
        seed=config.seed, device=config.device, scheduler=config.scheduler, scheduler_options=config.scheduler_args,
        clip_grad=config.clip_grad, callbacks=[*stopping, *callbacks], precision=config.precision,
        compile=config.compile, handle_signals=handle_signals, threads=config.threads,
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
    threads: int | None = None  # torch's CPU threads during training (None: an accelerator)
    calibration: dict[str, Any] | None = None  # what calibrate() did (classes only)
    kept_start: str | None = None  # the line saying the start's weights were kept, if they were


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
    start = warm_start(config, spec, model, baselines, prepared)
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
    kept = start_kept(start, history)
    calibration = calibrate(config, prepared, model)
    notes = list(prepared.notes) + list(last.notes) + ([kept] if kept else [])
    return Fitted(
        model=model.cpu().eval(), spec=spec, baselines=baselines, history=history, epochs_run=last.state.epoch,
        best_epoch=history.best_epoch,
        stopped_early=bool(last.state.stop and last.state.epoch < config.epochs),
        device=str(last.device), seconds=seconds, notes=notes, threads=last.threads,
        calibration=calibration, kept_start=kept,
    )  # fmt: skip


def warm_start(
    config: TrainConfig, spec: dict[str, Any], model: nn.Module, baselines: Baselines, prepared: Prepared
) -> str | None:
    """Start the model from the linear fit when it can (``--warm-start``, the linear model, the MLP's
    linear path): the start's name for a person, or None (its random initial weights)."""
    start_from = getattr(model, "start_from", None)
    if not (config.warm_start and callable(start_from) and (config.model != "mlp" or spec["args"].get("skip"))):
        return None
    start_from(*baselines.linear_start(prepared.pre.n_outputs))
    return baselines.start_name()


def start_kept(start: str | None, history: History) -> str | None:
    """The line a run gets when early stopping kept the weights it started from (best epoch 0)."""
    if history.best_epoch != 0:
        return None
    return kept_the_start(start if start is not None else "its random initial weights")


def kept_the_start(name: str) -> str:
    """The line a run gets when no epoch improved on the validation loss of the weights it started from."""
    return (f"no epoch improved on the start: the model kept is the one it started from ({name}); "
            "try --lr, --hidden or --epochs")  # fmt: skip


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
    start = warm_start(config, spec, model, baselines, prepared)  # the fit's start, named in its line
    check_compatible(model, state["model"], source)  # one line naming the keys, not torch's traceback
    model.load_state_dict(state["model"])
    fit_state = state["fit"]
    history = History(state.get("history", []), fit_state.get("best_epoch"))
    kept = start_kept(start, history)
    calibration = calibrate(config, prepared, model)
    notes = list(prepared.notes) + list(extra.get("notes", [])) + ([kept] if kept else [])
    return Fitted(
        model=model.eval(), spec=spec, baselines=baselines, history=history, epochs_run=fit_state["epoch"],
        best_epoch=history.best_epoch,
        stopped_early=bool(fit_state["stop"] and fit_state["epoch"] < config.epochs), device=extra.get("device", "cpu"),
        seconds=sum(history["seconds"]), notes=notes, threads=extra.get("threads"), calibration=calibration,
        kept_start=kept,
    )  # fmt: skip


def calibrate(config: TrainConfig, prepared: Prepared, model: nn.Module) -> dict[str, Any] | None:
    """Temperature scaling: for classes (unless ``calibrate`` is off), the temperature that
    lowers the validation rows' log loss (:func:`~torchwork.evaluation.calibration.fit_temperature`),
    set on the preprocessor, which applies it wherever logits become probabilities (predict,
    evaluate, export). Of streamed data, the validation rows of the sample. What it did, for
    ``run.json``; None for regression."""
    pre = prepared.pre
    if pre.task != "classification":
        return None
    pre.target.temperature = 1.0
    if not config.calibrate:
        return {"skipped": "--no-calibrate"}
    if prepared.size("val") == 0:
        return {"skipped": "no validation rows"}
    s = prepared.parts["val"]
    logits = predict(model.eval(), torch.from_numpy(np.ascontiguousarray(prepared.X[s]))).double().numpy()
    logits = logits.reshape(len(logits), -1)
    truth = prepared.truth[s]
    before = classification_metrics(truth, pre.decode(logits))
    pre.target.temperature = fit_temperature(logits, truth)
    after = classification_metrics(truth, pre.decode(logits))
    return {
        "temperature": pre.target.temperature, "rows": len(truth),
        "val_log_loss": {"before": before["log_loss"], "after": after["log_loss"]},
        "val_ece": {"before": before["ece"], "after": after["ece"]},
    }  # fmt: skip


# ----------------------------------------------------------------------------------- evaluation
def model_predictions(model: nn.Module, pre: Preprocessor, X: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Predictions for encoded rows: target units (float64 (n, k)), or class probabilities (n, C)."""
    outputs = predict(model, torch.from_numpy(np.ascontiguousarray(X)), batch_size)
    return pre.decode(outputs.double().numpy())


def score(pre: Preprocessor, truth: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """Regression metrics (target units) or classification metrics (codes against probabilities)."""
    if pre.task == "regression":
        return regression_metrics(truth, predictions)
    return classification_metrics(truth, predictions)


def evaluate(model: nn.Module, baselines: Baselines, prepared: Prepared, trees: Trees | None = None) -> dict[str, Any]:
    """Metrics per split for the model and for each baseline fitted on the training rows (and for
    the gradient-boosted trees, when they were fitted)."""
    pre = prepared.pre
    metrics: dict[str, Any] = {"task": pre.task}
    if pre.task == "classification":
        metrics["classes"] = pre.target.classes
    if prepared.stream is not None:
        return metrics | _evaluate_streamed(model, baselines, prepared)
    metrics["model"] = {}
    for name in baselines.fitted:
        metrics[name] = {}
    if trees is not None and trees.model is not None:
        metrics[TREES] = {}
    metrics["rows"] = {}
    for part in PARTS:
        if prepared.size(part) == 0:
            continue
        s = prepared.parts[part]
        X, truth = prepared.X[s], prepared.truth[s]
        metrics["model"][part] = score(pre, truth, model_predictions(model, pre, X))
        for name, predicted in baselines.predictions(X).items():
            metrics[name][part] = score(pre, truth, predicted)
        if TREES in metrics:
            assert trees is not None
            metrics[TREES][part] = score(pre, truth, trees.predictions(pre, X))
        metrics["rows"][part] = len(X)
    return metrics


def _evaluate_streamed(model: nn.Module, baselines: Baselines, prepared: Prepared) -> dict[str, Any]:
    """Metrics of every row of each part, in one more pass; ROC-AUC from the sample (see runs.streamed)."""
    pre = prepared.pre

    def everyone(X: np.ndarray) -> dict[str, np.ndarray]:  # the model's and each baseline's, design built once
        return {"model": model_predictions(model, pre, X), **baselines.predictions(X)}

    result: dict[str, Any] = prepared.stream.evaluate(["model", *baselines.fitted], everyone)
    if pre.task == "classification":
        for part in PARTS:
            if prepared.size(part) == 0 or part not in result["model"]:
                continue
            s = prepared.parts[part]
            for name, proba in everyone(prepared.X[s]).items():
                result[name][part]["roc_auc"] = roc_auc_on_sample(prepared.truth[s], proba)
                result[name][part]["roc_auc_rows"] = prepared.size(part)
    result["rows"] = {p: prepared.rows_in(p) for p in PARTS if prepared.rows_in(p)}
    return result
