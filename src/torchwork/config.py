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
import numbers
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchwork.errors import InputError


def _opt(default: Any, kind: str, help: str, **kw: Any) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"kind": kind, "help": help, **kw})
    return field(default=default, metadata={"kind": kind, "help": help, **kw})


@dataclass
class TrainConfig:
    # data
    data: str | None = _opt(None, "path", "Data file: CSV, Parquet, .npy or .npz.")
    target: str | list[str] | None = _opt(None, "columns", "Target column (or list of columns).")
    features: list[str] | None = _opt(
        None, "names", "Feature columns, comma-separated.", default_help="every other column"
    )
    drop_missing: bool = _opt(False, "bool", "Drop rows with a missing value (and say how many) instead of failing.")
    val: float = _opt(0.15, "fraction", "Fraction of rows for validation (early stopping watches it).")
    test: float = _opt(0.15, "fraction", "Fraction of rows held out for the final test.")
    shuffle: bool = _opt(True, "bool", "Shuffle rows before splitting, and batches every epoch.")
    standardize: bool = _opt(True, "bool", "Standardize features and target (fitted on the training split).")
    # model
    model: str = _opt("mlp", "str", "linear, mlp, or package.module:Class (your nn.Module).")
    hidden: list[int] = _opt([64, 64], "ints", "MLP hidden layer sizes, comma-separated.")
    activation: str = _opt("relu", "str", "MLP activation: relu, gelu, silu, tanh, sigmoid, leaky_relu, elu.")
    dropout: float = _opt(0.0, "fraction", "MLP dropout probability.")
    model_args: dict[str, Any] = _opt({}, "dict", "Constructor arguments for your own model class (config file).")
    # optimisation
    loss: str = _opt("mse", "str", "l1 (mae), mse (l2), huber or smooth_l1.")
    optimizer: str = _opt("adam", "str", "sgd, adam, adamw or rmsprop.")
    lr: float = _opt(1e-3, "positive", "Learning rate.")
    weight_decay: float = _opt(0.0, "nonnegative", "Weight decay (L2 penalty; decoupled for adamw).")
    optimizer_args: dict[str, Any] = _opt({}, "dict", "More optimizer options, e.g. momentum (config file).")
    scheduler: str | None = _opt(None, "str?", "step, multistep, exponential, cosine, plateau or onecycle.")
    scheduler_args: dict[str, Any] = _opt({}, "dict", "Scheduler options, e.g. step_size, gamma (config file).")
    clip_grad: float | None = _opt(None, "positive?", "Clip the gradient norm to this value.")
    epochs: int = _opt(1000, "count", "Most epochs to train (early stopping usually ends sooner).")
    batch_size: int = _opt(64, "count", "Rows per batch.")
    early_stopping: int = _opt(
        30,
        "count0",
        "Stop after this many epochs without a better validation loss (0: off); the best weights are restored.",
    )
    seed: int = _opt(0, "int", "Seed for the split, the initial weights, shuffling and dropout.")
    device: str = _opt("auto", "str", "auto (cuda, then mps, then cpu), cpu, cuda or cuda:N.")
    precision: str = _opt("32", "str", "32 or bf16-mixed.")
    compile: bool = _opt(False, "bool", "Compile the model with torch.compile.")
    # outputs
    tensorboard: bool = _opt(False, "bool", "Write TensorBoard event files to RUN_DIR/tensorboard.")
    checkpoint_every: int | None = _opt(None, "count?", "Write a checkpoint every N epochs.")
    checkpoint_every_steps: int | None = _opt(None, "count?", "Write a checkpoint every N optimizer steps.")

    # Where each value came from, for error messages: "--epochs" or "run.toml: key 'epochs'".
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def where(self, key: str) -> str:
        return self.sources.get(key, f"--{key.replace('_', '-')}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in option_fields()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def updated(self, values: dict[str, Any], source: str | None = None) -> TrainConfig:
        """A copy with ``values`` set (each checked); ``source`` names a config file."""
        new = dataclasses.replace(self, sources=dict(self.sources))
        known = {f.name: f for f in option_fields()}
        for raw_key, value in values.items():
            key = str(raw_key).replace("-", "_")
            where = f"{source}: key {raw_key!r}" if source else f"--{key.replace('_', '-')}"
            if key not in known:
                raise InputError(f"{where}: unknown option; valid keys: {', '.join(known)}")
            setattr(new, key, _coerce(value, known[key].metadata["kind"], where))
            new.sources[key] = where
        return new

    def validate(self) -> TrainConfig:
        """Check names against the registries and values against each other; return self."""
        from torchwork.losses import LOSSES
        from torchwork.models import ACTIVATIONS, MODELS
        from torchwork.optim import OPTIMIZERS, SCHEDULERS
        from torchwork.trainer import PRECISIONS

        for key, registry in (("loss", LOSSES), ("optimizer", OPTIMIZERS), ("activation", ACTIVATIONS)):
            if getattr(self, key) not in registry:
                raise InputError(
                    f"{self.where(key)}: unknown {key} {getattr(self, key)!r}; valid names: {registry.describe()}"
                )
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise InputError(
                f"{self.where('scheduler')}: unknown scheduler {self.scheduler!r}; valid names: {SCHEDULERS.describe()}"
            )
        if ":" not in self.model and self.model not in MODELS:
            raise InputError(
                f"{self.where('model')}: unknown model {self.model!r}; valid names: {MODELS.describe()}, "
                "or package.module:Class"
            )
        if self.precision not in PRECISIONS:
            raise InputError(
                f"{self.where('precision')}: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.val + self.test >= 1.0:
            raise InputError(f"{self.where('val')} + {self.where('test')} must leave rows for training")
        if self.dropout >= 1.0:
            raise InputError(f"{self.where('dropout')}: must be below 1, got {self.dropout}")
        if not self.hidden:
            raise InputError(f"{self.where('hidden')}: needs at least one layer size")
        self._check_nested("optimizer_args", "optimizer", self.optimizer, OPTIMIZERS.get(self.optimizer).options)
        if self.scheduler is not None:
            self._check_nested("scheduler_args", "scheduler", self.scheduler, SCHEDULERS.get(self.scheduler).options)
        if self.model == "mlp":
            for key in self.model_args:
                if key in ("hidden", "activation", "dropout", "in_features", "out_features"):
                    raise InputError(f"{self.where('model_args')}: give {key!r} as its own option, not in model_args")
        from torchwork.devices import resolve_device

        resolve_device(self.device)  # an unknown or absent device fails before any data is read
        return self

    def _check_nested(self, key: str, kind: str, name: str, valid: tuple[str, ...]) -> None:
        """Each option in the table ``key`` (e.g. optimizer_args) is one ``name`` takes, of the right kind."""
        table = getattr(self, key)
        for option, value in table.items():
            if option not in valid:
                raise InputError(
                    f"{self.where(key)}: {kind} {name!r} takes no option {option!r}; valid options: {', '.join(valid)}"
                )
            table[option] = _coerce(value, NESTED_KINDS[option], f"{self.where(key)}.{option}")


# The kinds of the options inside optimizer_args and scheduler_args (see _coerce).
NESTED_KINDS = {
    "momentum": "nonnegative", "dampening": "nonnegative", "weight_decay": "nonnegative", "nesterov": "bool",
    "betas": "floats", "eps": "positive", "amsgrad": "bool", "foreach": "bool", "fused": "bool",
    "capturable": "bool", "alpha": "nonnegative", "centered": "bool", "step_size": "count", "gamma": "positive",
    "milestones": "ints", "t_max": "count", "eta_min": "nonnegative", "factor": "positive", "patience": "count0",
    "threshold": "nonnegative", "min_lr": "nonnegative", "max_lr": "positive", "pct_start": "fraction",
}  # fmt: skip


def option_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(TrainConfig) if f.name != "sources"]


def _field(name: str) -> dataclasses.Field[Any]:
    return next(f for f in option_fields() if f.name == name)


def default_of(name: str) -> Any:
    f = _field(name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def help_of(name: str) -> str:
    """The help text of an option, with its default: the CLI's help comes from here."""
    f = _field(name)
    default = f.metadata.get("default_help")
    if default is None:
        value = default_of(name)
        default = ",".join(map(str, value)) if isinstance(value, list) else "none" if value is None else value
    return f"{f.metadata['help']} [default: {default}]"


def _coerce(value: Any, kind: str, where: str) -> Any:
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None or (optional and isinstance(value, str) and value.lower() in ("", "none", "null")):
        if optional or kind in ("path", "columns", "names"):
            return None
        raise InputError(f"{where}: a value is required")
    if kind in ("str", "path"):
        if not isinstance(value, str):
            raise InputError(f"{where}: expected a string, got {value!r}")
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise InputError(f"{where}: expected true or false, got {value!r}")
    if kind in ("int", "count", "count0"):
        number = _number(value, where, integer=True)
        floor = {"int": None, "count": 1, "count0": 0}[kind]
        if floor is not None and number < floor:
            raise InputError(f"{where}: must be >= {floor}, got {number}")
        return number
    if kind in ("positive", "nonnegative", "fraction"):
        number = float(_number(value, where, integer=False))
        if kind == "positive" and not number > 0:
            raise InputError(f"{where}: must be > 0, got {value!r}")
        if kind == "nonnegative" and not number >= 0:
            raise InputError(f"{where}: must be >= 0, got {value!r}")
        if kind == "fraction" and not 0.0 <= number < 1.0:
            raise InputError(f"{where}: must be a fraction in [0, 1), got {value!r}")
        return number
    if kind in ("ints", "floats", "names", "columns"):
        items = value.split(",") if isinstance(value, str) else value
        if kind == "columns" and isinstance(value, str):
            return value
        if not isinstance(items, list | tuple):
            raise InputError(f"{where}: expected a list, got {value!r}")
        if kind == "ints":
            return [_number(v.strip() if isinstance(v, str) else v, where, integer=True, floor=1) for v in items]
        if kind == "floats":
            return [float(_number(v, where, integer=False)) for v in items]
        names = [str(v).strip() for v in items]
        if any(not n for n in names):
            raise InputError(f"{where}: has an empty name")
        return names
    if kind == "dict":
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a table of key = value, got {value!r}")
        return dict(value)
    raise AssertionError(kind)


def _number(value: Any, where: str, *, integer: bool, floor: int | None = None) -> Any:
    if isinstance(value, bool):
        raise InputError(f"{where}: expected a number, got {value!r}")
    number: float
    if integer:
        # int, NumPy's integers (np.arange grids), or the digits of one
        if isinstance(value, numbers.Integral) or (isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value)):
            number = int(value)
        else:
            raise InputError(f"{where}: expected an integer, got {value!r}")
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{where}: expected a number, got {value!r}") from None
    if not integer and number != number:  # NaN
        raise InputError(f"{where}: expected a number, got {value!r}")
    if floor is not None and number < floor:
        raise InputError(f"{where}: must be >= {floor}, got {number}")
    return number


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    suffix = path.suffix.lower()
    try:
        text = path.read_text()
        if suffix == ".toml":
            doc = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            raise InputError(f"{path}: config files are .toml, .yaml or .yml")
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            raise InputError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
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
