"""The configuration of a training run: every option, its default, and its checks.

One :class:`TrainConfig` describes a run whether it comes from command-line flags, a TOML
or YAML file (``--config``), or Python. Flags override the file. Every value is checked
before any data is read, and an error names the flag (``--epochs``) or the file and key
(``run.toml: key 'epochs'``) it came from. The resolved configuration, defaults included,
is saved in the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchwork.core.checks import FLOAT32_MAX, check, choice
from torchwork.core.errors import InputError, one_line


def _opt(default: Any, kind: str, help: str, **kw: Any) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"kind": kind, "help": help, **kw})
    return field(default=default, metadata={"kind": kind, "help": help, **kw})


PYTHON = "train()"  # the source of values given as Python arguments (torchwork.train): consent, as a flag is


@dataclass
class TrainConfig:
    # data
    data: str | None = _opt(None, "path", "Data file: CSV, Parquet, .npy or .npz.", group="data")
    target: list[str] | None = _opt(
        None, "columns", "Target column (several: comma-separated).", default_help="required", group="data"
    )
    features: list[str] | None = _opt(
        None, "names", "Feature columns, comma-separated.", default_help="every other column", group="data"
    )
    exclude: list[str] = _opt(
        [], "names", "Columns to leave out of the features (an ID, a leak), comma-separated.", group="data"
    )
    task: str = _opt(
        "auto",
        "str",
        "auto, regression or classification (auto: labels are classes, numbers regression).",
        group="data",
    )
    categorical: list[str] = _opt(
        [], "names", "Columns to treat as categories (e.g. integer codes), comma-separated.", group="data"
    )
    numeric: list[str] = _opt([], "names", "Columns to treat as numbers, comma-separated.", group="data")
    drop_missing: bool = _opt(
        False, "bool", "Drop rows with a missing value (and say how many) instead of filling.", group="data"
    )
    val: float = _opt(
        0.15,
        "fraction",
        "Fraction of rows for validation (early stopping, calibration and the verdict watch it).",
        group="data",
    )
    test: float = _opt(
        0.0,
        "fraction",
        "Fraction of rows held out for a final test, never fitted (0: every row trains or validates).",
        group="data",
    )
    shuffle: bool = _opt(
        True, "bool", "Shuffle rows before splitting (stratified by class), and batches every epoch.", group="data"
    )
    standardize: bool = _opt(
        True, "bool", "Standardize features and target (fitted on the training split).", group="data"
    )
    target_transform: str = _opt(
        "none", "str", "none or log: learn log(1 + target), predict in the target's units.", group="data"
    )
    encoding: str | None = _opt(
        None, "str?", "Text encoding of a CSV file, e.g. latin-1.", default_help="utf-8", group="data"
    )
    delimiter: str | None = _opt(
        None, "str?", "CSV delimiter.", default_help="detected: comma, semicolon, tab or pipe", group="data"
    )
    decimal: str | None = _opt(
        None, "str?", "Decimal mark of numbers in a CSV file (, for 1,5).", default_help=".", group="data"
    )
    stream: bool = _opt(
        False,
        "bool",
        "Stream the data in chunks (Parquet file or folder, .npy) instead of reading it into memory.",
        group="data",
    )
    memory_budget: int | None = _opt(
        None,
        "bytes?",
        "Stream Parquet/.npy data whose in-memory table would need more than this, e.g. 4GB.",
        default_help="half the available memory",
        group="data",
    )
    # model
    model: str = _opt("mlp", "str", "linear, mlp, or package.module:Class (your nn.Module).", group="model")
    hidden: list[int] = _opt([64, 64], "ints", "MLP hidden layer sizes, comma-separated.", group="model")
    activation: str = _opt(
        "relu", "str", "MLP activation: relu, gelu, silu, tanh, sigmoid, leaky_relu, elu.", group="model"
    )
    dropout: float = _opt(0.0, "fraction", "MLP dropout probability.", group="model")
    warm_start: bool = _opt(
        True,
        "bool",
        "Start the linear model, and the MLP's linear path, from the baseline fitted in closed form.",
        group="model",
    )
    model_args: dict[str, Any] = _opt(
        {}, "dict", "Constructor arguments for your own model class (config file).", group="model"
    )
    # training
    loss: str = _opt("auto", "str", "auto, l1 (mae), mse (l2), huber, smooth_l1, cross_entropy (ce) or bce.",
                     default_help="mse; bce for two classes, cross_entropy for more", group="training")  # fmt: skip
    class_weight: str | dict[str, float] | None = _opt(
        None,
        "any?",
        "balanced: weigh classes by the inverse of their frequency (a config file may give a table).",
        group="training",
    )
    max_classes: int = _opt(100, "count", "Most classes a classification target may have.", group="training")
    optimizer: str = _opt("auto", "str", "auto, sgd, adam, adamw, rmsprop or lbfgs.",
                          default_help="lbfgs for the linear model, adam otherwise", group="training")  # fmt: skip
    lr: float | None = _opt(
        None, "positive?", "Learning rate.", default_help="1 for lbfgs, 0.01 for sgd, 0.001 otherwise", group="training"
    )
    weight_decay: float = _opt(0.0, "nonnegative", "Weight decay (L2 penalty; decoupled for adamw).", group="training")
    optimizer_args: dict[str, Any] = _opt(
        {}, "dict", "More optimizer options, e.g. momentum (config file).", group="training"
    )
    scheduler: str | None = _opt(
        None, "str?", "step, multistep, exponential, cosine, plateau or onecycle.", group="training"
    )
    scheduler_args: dict[str, Any] = _opt(
        {}, "dict", "Scheduler options, e.g. step_size, gamma (config file).", group="training"
    )
    clip_grad: float | None = _opt(None, "positive?", "Clip the gradient norm to this value.", group="training")
    epochs: int = _opt(1000, "count", "Most epochs to train (early stopping usually ends sooner).", group="training")
    batch_size: int | None = _opt(
        None, "count?", "Rows per batch.", default_help="64; every row at once for lbfgs", group="training"
    )
    early_stopping: int = _opt(
        30,
        "count0",
        "Stop when the validation loss has not improved for this many epochs "
        "(0: off; classes: by at least 0.001); the best weights are restored.",
        group="training",
    )
    seed: int = _opt(0, "int", "Seed for the split, the initial weights, shuffling and dropout.", group="training")
    calibrate: bool = _opt(
        True,
        "bool",
        "Classes: fit a temperature on the validation rows that calibrates the probabilities.",
        group="training",
    )
    device: str = _opt("auto", "str", "auto (cuda, then mps, then cpu), cpu, cuda or cuda:N.", group="processes")
    threads: int | None = _opt(
        None,
        "count?",
        "CPU threads for training.",
        default_help="sized to the work: 1 for small batches and models",
        group="processes",
    )
    precision: str = _opt("32", "str", "32 or bf16-mixed.", group="processes")
    compile: bool = _opt(False, "bool", "Compile the model with torch.compile.", group="processes")
    # output
    tensorboard: bool = _opt(False, "bool", "Write TensorBoard event files to RUN_DIR/tensorboard.", group="output")
    checkpoint_every: int | None = _opt(None, "count?", "Write a checkpoint every N epochs.", group="output")
    checkpoint_every_steps: int | None = _opt(
        None, "count?", "Write a checkpoint every N optimizer steps.", group="output"
    )

    # Where each value came from, for error messages: "--epochs" or "run.toml: key 'epochs'".
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def where(self, key: str) -> str:
        return self.sources.get(key, f"--{key.replace('_', '-')}")

    def from_file(self, key: str) -> bool:
        """True if ``key``'s value came from a config file (not a flag or a Python argument)."""
        source = self.sources.get(key, "")
        return ": key " in source and not source.startswith(f"{PYTHON}: ")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in option_fields()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def resolved_optimizer(self) -> str:
        """``auto``: L-BFGS (full batch) for the linear model, Adam for the others."""
        if self.optimizer != "auto":
            return self.optimizer
        return "lbfgs" if self.model == "linear" else "adam"

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return {"lbfgs": 1.0, "sgd": 0.01}.get(self.resolved_optimizer(), 1e-3)

    def resolved_batch_size(self) -> int | None:
        """``None`` (every row at once) for L-BFGS, else 64, unless given."""
        if self.batch_size is not None:
            return self.batch_size
        return None if self.resolved_optimizer() == "lbfgs" else 64

    def updated(self, values: dict[str, Any], source: str | None = None) -> TrainConfig:
        """A copy with ``values`` set (each checked); ``source`` names a config file (or ``train()``)."""
        new = dataclasses.replace(self, sources=dict(self.sources))
        known = {f.name: f for f in option_fields()}
        for raw_key, value in values.items():
            key = str(raw_key).replace("-", "_")
            where = f"{source}: key {raw_key!r}" if source else f"--{key.replace('_', '-')}"
            if key not in known:
                raise InputError(f"{where}: unknown option; valid keys: {', '.join(known)}")
            setattr(new, key, check(value, known[key].metadata["kind"], where))
            new.sources[key] = where
        return new

    def validate(self) -> TrainConfig:
        """Check names against the registries and values against each other; return self."""
        from torchwork.core.checks import check_options
        from torchwork.core.runtime import resolve_device
        from torchwork.data.csv import csv_options
        from torchwork.data.tables import TASKS
        from torchwork.models.registry import MODELS
        from torchwork.models.tabular import ACTIVATIONS, check_hidden
        from torchwork.training.components import LOSSES, OPTIMIZERS, SCHEDULERS
        from torchwork.training.trainer import PRECISIONS

        for key, registry in (("loss", LOSSES), ("optimizer", OPTIMIZERS), ("activation", ACTIVATIONS)):
            if getattr(self, key) != "auto" or key == "activation":
                registry.canonical(getattr(self, key), self.where(key))
        self.task = choice(self.task, TASKS, self.where("task"))
        self.target_transform = choice(self.target_transform, ("none", "log"), self.where("target_transform"))
        if isinstance(self.class_weight, dict):
            self.class_weight = {
                str(k): check(v, "nonnegative", f"{self.where('class_weight')}.{k}")
                for k, v in self.class_weight.items()
            }
        elif self.class_weight is not None:
            choice(self.class_weight, ("balanced",), self.where("class_weight"))
        csv = csv_options(self.encoding, self.delimiter, self.decimal, self.where)  # the one rule (data/csv.py)
        self.encoding, self.delimiter, self.decimal = csv["encoding"], csv["delimiter"], csv["decimal"]
        if self.scheduler is not None:
            SCHEDULERS.canonical(self.scheduler, self.where("scheduler"))
        if ":" not in self.model and self.model not in MODELS:
            raise InputError(
                f"{self.where('model')}: unknown model {self.model!r}; valid names: {MODELS.describe()}, "
                "or package.module:Class"
            )
        self.precision = choice(self.precision, PRECISIONS, self.where("precision"))  # the Trainer's rule
        if self.val + self.test >= 1.0:
            raise InputError(f"{self.where('val')} + {self.where('test')} must leave rows for training")
        self.hidden = check_hidden(self.hidden, f"{self.where('hidden')}: layer sizes")  # the MLP's rule
        if not 0 <= self.seed < 2**64:  # what torch.manual_seed and NumPy's SeedSequence take
            raise InputError(f"{self.where('seed')}: expected an integer from 0 to 2**64 - 1, got {self.seed}")
        for key in ("lr", "weight_decay", "clip_grad"):  # torch computes with them in float32
            if (getattr(self, key) or 0.0) > FLOAT32_MAX:
                raise InputError(f"{self.where(key)}: {getattr(self, key)!r} is too large (more than float32 holds)")
        self.optimizer_args = check_options(
            OPTIMIZERS, self.resolved_optimizer(), self.optimizer_args, self.where("optimizer_args")
        )
        if self.scheduler is not None:
            self.scheduler_args = check_options(
                SCHEDULERS, self.scheduler, self.scheduler_args, self.where("scheduler_args")
            )
        elif self.scheduler_args:
            raise InputError(f"{self.where('scheduler_args')}: given without a scheduler")
        if self.model == "mlp":
            for key in self.model_args:
                if key in ("hidden", "activation", "dropout", "in_features", "out_features"):
                    raise InputError(f"{self.where('model_args')}: give {key!r} as its own option, not in model_args")
        resolve_device(self.device, self.where("device"))  # an unknown or absent device fails before any data is read
        return self


def option_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(TrainConfig) if f.name != "sources"]


def _field(name: str) -> dataclasses.Field[Any]:
    return next(f for f in option_fields() if f.name == name)


def default_of(name: str) -> Any:
    f = _field(name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


# The groups of options, in the order ``torchwork train --help`` shows them (each field's ``group``).
GROUPS = {"data": "Data", "model": "Model", "training": "Training", "output": "Output",
          "processes": "Devices and processes"}  # fmt: skip


def group_of(name: str) -> str:
    return str(_field(name).metadata["group"])


def help_of(name: str) -> str:
    """The help text of an option, with its default as a person reads it: the CLI's help comes from here.

    A required option says so; an empty list, or a switch's default, says nothing more than the
    flag does (``--shuffle / --no-shuffle [default: on]``).
    """
    f = _field(name)
    default = f.metadata.get("default_help")
    if default == "required":
        return f"{f.metadata['help']} Required (here or in --config)."
    if default is None:
        value = default_of(name)
        if value == []:
            return str(f.metadata["help"])
        if isinstance(value, bool):
            default = "on" if value else "off"
        else:
            default = ",".join(map(str, value)) if isinstance(value, list) else "none" if value is None else value
    return f"{f.metadata['help']} [default: {default}]"


MAX_CONFIG_BYTES = 1 << 20


class _NoAliasLoader:
    """A YAML safe loader that refuses anchors and aliases (a "billion laughs" expands them)."""

    @staticmethod
    def load(text: str, source: str) -> Any:
        import yaml

        class Loader(yaml.SafeLoader):
            def compose_node(self, parent: Any, index: Any) -> Any:
                if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
                    event = self.peek_event()
                    raise InputError(
                        f"{source}: line {event.start_mark.line + 1}: YAML anchors and aliases are not accepted "
                        "in config files"
                    )
                return super().compose_node(parent, index)

        return yaml.load(text, Loader=Loader)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise InputError(f"{path}: config files are .toml, .yaml or .yml")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InputError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB; not a config file")
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text) if suffix == ".toml" else _NoAliasLoader.load(text, str(path))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None
    except RecursionError:  # both parsers recurse once per level of [[[...]]] or {a={a=...}}
        raise InputError(f"{path}: nested too deeply; not a config file") from None
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            raise InputError(f"{path}: not valid YAML ({one_line(exc, None, first_line=False)})") from None
        raise
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a table of key = value at the top level")
    # A relative data path is relative to the config file's folder.
    if isinstance(doc.get("data"), str) and not os.path.isabs(doc["data"]):
        doc["data"] = str(path.parent / doc["data"])
    return doc


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    overrides_source: str | None = None,
) -> TrainConfig:
    """Defaults, then the file's values, then ``overrides`` (the command-line flags).

    Errors in ``overrides`` name the flag (``--epochs``), or ``overrides_source`` and the key.
    """
    config = TrainConfig()
    if path is not None:
        config = config.updated(read_config_file(path), source=str(path))
    if overrides:
        config = config.updated({k: v for k, v in overrides.items() if v is not None}, source=overrides_source)
    return config
