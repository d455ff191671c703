"""The preprocessing of a table, fitted on the training rows and saved as data.

A :class:`Preprocessor` turns a table's feature columns into the model's input matrix and
its target columns into the model's targets, and the model's outputs back into the
target's units or labels. It is fitted on the training rows only and stored in
``model.json`` as plain JSON (never pickled), so ``predict``, ``evaluate``, the estimators
and ``export`` apply exactly what training applied.

The input matrix (float32) is laid out as: the numeric block (numeric columns, then the
parts of date columns, standardized; then a 0/1 missing-indicator per column that had
gaps in training), then one column of category codes per categorical column (``"codes"``,
for models with embeddings) or their one-hot columns (``"onehot"``, for your own models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError
from torchwork.data.columns import Column
from torchwork.data.encoders import (
    CategoryEncoder,
    DatetimeEncoder,
    NumericEncoder,
    TargetEncoder,
    as_float,
)
from torchwork.data.tables import Rows


@dataclass
class Encoded:
    """Model inputs for some rows, and what had to be filled in or was never seen."""

    X: np.ndarray  # (n, inputs) float32
    filled: dict[str, int] = field(default_factory=dict)  # column -> missing values filled
    unknown: dict[str, int] = field(default_factory=dict)  # column -> categories never seen in training


def _no_where(i: int) -> str:
    return f"row {i + 1}"


def _check_standardized(values: np.ndarray, name: str, source: str, where: Any) -> None:
    """A value that fits float32 may not once standardized (3.4e38 / a scale below 1): say where."""
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(values.astype(np.float32))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source}: column {name!r}, {where(i)}: too large once standardized (more than float32 holds)"
        )


def _finite(value: Any, what: str, positive: bool = False) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or (positive and not value > 0):
        raise ValueError(f"{what} is {value!r:.40}, not a {'positive ' if positive else ''}finite number")
    return float(value)


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} is {value!r:.40}, not true or false")
    return value


def _numeric_from_json(name: str, doc: dict[str, Any], indicator: bool) -> NumericEncoder:
    return NumericEncoder(name, _finite(doc["fill"], f"{name}: fill"), _finite(doc["mean"], f"{name}: mean"),
                          _finite(doc["scale"], f"{name}: scale", positive=True), indicator)  # fmt: skip


@dataclass
class Preprocessor:
    columns: list[Column]
    numeric: dict[str, NumericEncoder | DatetimeEncoder]
    categorical: dict[str, CategoryEncoder]
    target: TargetEncoder
    encoding: str = "codes"  # or "onehot"

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(
        cls, frame: pd.DataFrame, columns: list[Column], target: TargetEncoder, *, standardize: bool = True,
        encoding: str = "codes", source: str = "data",
    ) -> Preprocessor:  # fmt: skip
        """Fitted on ``frame`` (the training rows only)."""
        numeric: dict[str, NumericEncoder | DatetimeEncoder] = {}
        categorical: dict[str, CategoryEncoder] = {}
        for col in columns:
            values = frame[col.name]
            if col.kind == "numeric":
                numeric[col.name] = NumericEncoder.fit(col.name, as_float(values, col.name, source, _no_where),
                                                       standardize)  # fmt: skip
            elif col.kind == "datetime":
                numeric[col.name] = DatetimeEncoder.fit(col.name, values, standardize)
            else:
                categorical[col.name] = CategoryEncoder.fit(col.name, values)
        return cls(list(columns), numeric, categorical, target, encoding)

    # --------------------------------------------------------------- layout
    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def target_names(self) -> list[str]:
        return self.target.names

    @property
    def task(self) -> str:
        return self.target.task

    def _numeric_encoders(self) -> list[tuple[str, NumericEncoder]]:
        out: list[tuple[str, NumericEncoder]] = []
        for name, enc in self.numeric.items():
            out += [(name, enc)] if isinstance(enc, NumericEncoder) else [(name, e) for e in enc.numeric]
        return out

    @property
    def indicators(self) -> list[str]:
        return [name for name, enc in self.numeric.items() if enc.indicator]

    @property
    def n_numeric(self) -> int:
        """Inputs in the numeric block (values, date parts, missing indicators)."""
        return len(self._numeric_encoders()) + len(self.indicators)

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column (the unknown code included)."""
        return [enc.n_codes for enc in self.categorical.values()]

    @property
    def n_inputs(self) -> int:
        if self.encoding == "codes":
            return self.n_numeric + len(self.categorical)
        return self.n_numeric + sum(n - 1 for n in self.cardinalities)

    @property
    def n_outputs(self) -> int:
        return self.target.outputs

    @property
    def input_names(self) -> list[str]:
        names = [enc.name for _, enc in self._numeric_encoders()] + [f"{n} is missing" for n in self.indicators]
        if self.encoding == "codes":
            return names + list(self.categorical)
        for name, enc in self.categorical.items():
            names += [f"{name}={label}" for label in enc.labels()[1:]]
        return names

    # ------------------------------------------------------------ transform
    def inputs(self, frame: pd.DataFrame | Rows, source: str = "data", where: Any = _no_where) -> Encoded:
        """The model's inputs (float32) for rows of ``frame`` that have the feature columns."""
        n = len(frame)
        # Each column is written into X as it is encoded: the float64 columns never all live at once.
        X = np.empty((n, self.n_inputs), dtype=np.float32)
        j = 0  # the next numeric column; missing-value indicators follow every numeric column
        flag = sum(1 if isinstance(e, NumericEncoder) else len(e.parts) for e in self.numeric.values())
        filled: dict[str, int] = {}
        unknown: dict[str, int] = {}
        for name, enc in self.numeric.items():
            if isinstance(enc, NumericEncoder):
                values, missing = enc.encode(as_float(frame[name], name, source, where))
                _check_standardized(values, name, source, where)
                X[:, j] = values
                j += 1
                del values
            else:
                parts = DatetimeEncoder.split(frame[name])
                missing = np.isnan(parts["year"])
                for p, e in zip(enc.parts, enc.numeric, strict=True):
                    X[:, j] = e.encode(parts[p])[0]
                    j += 1
            if missing.any():
                filled[name] = int(missing.sum())
            if enc.indicator:
                X[:, flag] = missing
                flag += 1
        codes = []
        for name, cat in self.categorical.items():
            c, missing_count, unknown_count = cat.encode(frame[name])
            codes.append(c)
            if missing_count:
                filled[name] = missing_count
            if unknown_count:
                unknown[name] = unknown_count
        j = flag
        for c, cardinality in zip(codes, self.cardinalities, strict=True):
            if self.encoding == "codes":
                X[:, j] = c
                j += 1
            else:
                X[:, j : j + cardinality - 1] = 0.0  # one-hot, written in place
                known = c > 0
                X[np.flatnonzero(known), j + c[known] - 1] = 1.0
                j += cardinality - 1
        return Encoded(X, filled, unknown)

    def raw_inputs(self, frame: pd.DataFrame, source: str = "data", where: Any = _no_where) -> np.ndarray:
        """What an exported model takes (float32): the numeric values and date parts as they are
        (NaN where missing), then each categorical column's code (see :meth:`vocabulary`)."""
        blocks: list[np.ndarray] = []
        for name, enc in self.numeric.items():
            if isinstance(enc, NumericEncoder):
                blocks.append(as_float(frame[name], name, source, where))
            else:
                parts = DatetimeEncoder.split(frame[name])
                blocks += [parts[p] for p in enc.parts]
        blocks += [cat.encode(frame[name])[0].astype(np.float64) for name, cat in self.categorical.items()]
        return np.column_stack(blocks).astype(np.float32) if blocks else np.zeros((len(frame), 0), np.float32)

    def vocabulary(self) -> dict[str, Any]:
        """How to make an exported model's inputs from a table's rows, as plain JSON."""
        inputs: list[dict[str, Any]] = []
        for name, enc in self.numeric.items():
            if isinstance(enc, NumericEncoder):
                inputs.append({"name": name, "kind": "number", "missing": "NaN"})
            else:
                inputs += [{"name": f"{name}.{p}", "kind": f"the {p} of date column {name!r}", "missing": "NaN"}
                           for p in enc.parts]  # fmt: skip
        for name, cat in self.categorical.items():
            first = cat.n_codes - len(cat.categories)
            inputs.append({"name": name, "kind": "category code",
                           "codes": {label: first + i for i, label in enumerate(cat.categories)},
                           "rare": {"values": cat.rare, "code": cat.rare_code}, "missing_code": cat.missing_code,
                           "unknown_code": 0})  # fmt: skip
        t = self.target
        outputs = ({"kind": "values", "names": t.names} if t.task == "regression"
                   else {"kind": "class probabilities", "classes": t.classes})  # fmt: skip
        return {"format": "torchwork-vocabulary/1", "inputs": inputs, "outputs": outputs,
                "values_match": "categories are matched as text: 3, 3.0 and '3' are '3'; True is 'True'"}  # fmt: skip

    def design(self, X: np.ndarray) -> np.ndarray:
        """The baselines' design matrix: the numeric block, then one-hot categories (the unknown
        code adds nothing). ``X`` itself when it is that already (the baselines compute in float64)."""
        if self.encoding == "onehot" or not self.categorical:
            return X
        numeric = X[:, : self.n_numeric].astype(np.float64)
        blocks = [numeric]
        for j, cardinality in enumerate(self.cardinalities):
            c = X[:, self.n_numeric + j].astype(np.int64)
            onehot = np.zeros((len(X), cardinality - 1))
            known = c > 0
            onehot[np.flatnonzero(known), c[known] - 1] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks)

    def targets(self, frame: pd.DataFrame | Rows, source: str = "data", where: Any = _no_where) -> np.ndarray:
        """The model's targets: standardized float32 (n, k); class codes int64 (n,); or, for a
        classifier with one logit (two classes), 0/1 as float32 (n, 1)."""
        t = self.target
        if t.task == "classification":
            codes = t.codes(frame[t.names[0]], source, where)
            return codes.astype(np.float32).reshape(-1, 1) if t.outputs == 1 else codes
        y = np.column_stack([as_float(frame[n], n, source, where) for n in t.names])
        return ((y - np.asarray(t.mean)) / np.asarray(t.scale)).astype(np.float32)

    def target_values(self, frame: pd.DataFrame | Rows, source: str = "data", where: Any = _no_where) -> np.ndarray:
        """The targets in their own units (float64 (n, k)) or as class codes (int64 (n,))."""
        t = self.target
        if t.task == "classification":
            return t.codes(frame[t.names[0]], source, where)
        return np.column_stack([as_float(frame[n], n, source, where) for n in t.names])

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs to predictions: target units (float64 (n, k)), or class probabilities (n, C)."""
        out = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
        t = self.target
        if t.task == "regression":
            return out * np.asarray(t.scale) + np.asarray(t.mean)
        if out.shape[1] == 1:  # one logit: the second class's
            p = 1.0 / (1.0 + np.exp(-out[:, 0]))
            return np.column_stack([1.0 - p, p])
        out = out - out.max(axis=1, keepdims=True)
        e = np.exp(out)
        return e / e.sum(axis=1, keepdims=True)

    def labels(self, proba: np.ndarray) -> list[Any]:
        """The predicted label of each row (the most probable class; ties to the first)."""
        return [self.target.classes[i] for i in np.argmax(proba, axis=1)]

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        cols = []
        for c in self.columns:
            doc: dict[str, Any] = {"name": c.name, "kind": c.kind, "reason": c.reason}
            enc = self.numeric.get(c.name) or self.categorical[c.name]
            if isinstance(enc, NumericEncoder):
                doc.update(fill=enc.fill, mean=enc.mean, scale=enc.scale, indicator=enc.indicator)
            elif isinstance(enc, DatetimeEncoder):
                parts = [{"part": p, "fill": e.fill, "mean": e.mean, "scale": e.scale}
                         for p, e in zip(enc.parts, enc.numeric, strict=True)]  # fmt: skip
                doc.update(parts=parts, indicator=enc.indicator)
            else:
                doc.update(categories=enc.categories, rare=enc.rare, missing_code=enc.missing_code,
                           rare_code=enc.rare_code)  # fmt: skip
            cols.append(doc)
        t = self.target
        target: dict[str, Any] = {"task": t.task, "names": t.names, "outputs": t.outputs}
        target.update({"mean": t.mean, "scale": t.scale} if t.task == "regression" else {"classes": t.classes})
        return {"features": self.features, "target": t.names, "task": t.task, "encoding": self.encoding,
                "columns": cols, "targets": target}  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Preprocessor:
        """The preprocessor :meth:`to_json` wrote; a value of the wrong kind or size raises ValueError.

        Every value is checked here, where it is loaded: a forged one is refused in one line, not
        turned into a traceback (or a silently wrong prediction) when rows are encoded.
        """
        columns: list[Column] = []
        numeric: dict[str, NumericEncoder | DatetimeEncoder] = {}
        categorical: dict[str, CategoryEncoder] = {}
        for c in doc["columns"]:
            name = str(c["name"])
            columns.append(Column(name, str(c["kind"]), str(c.get("reason", ""))))
            if c["kind"] == "numeric":
                numeric[name] = _numeric_from_json(name, c, _flag(c["indicator"], f"{name}: indicator"))
            elif c["kind"] == "datetime":
                parts = [str(p["part"]) for p in c["parts"]]
                encs = [_numeric_from_json(f"{name}.{p['part']}", p, False) for p in c["parts"]]
                numeric[name] = DatetimeEncoder(name, parts, encs, _flag(c["indicator"], f"{name}: indicator"))
            elif c["kind"] == "categorical":
                missing_code, rare_code = c["missing_code"], c["rare_code"]
                if not (missing_code is None or (type(missing_code) is int and missing_code == 1)):  # 0 is unknown
                    raise ValueError(f"{name}: missing_code {missing_code!r:.40} is not 1 or null")
                next_code = 1 + (missing_code is not None)
                if not (rare_code is None or (type(rare_code) is int and rare_code == next_code)):
                    raise ValueError(f"{name}: rare_code {rare_code!r:.40} is not {next_code} or null")
                categorical[name] = CategoryEncoder(
                    name, [str(v) for v in c["categories"]], [str(v) for v in c["rare"]], missing_code, rare_code
                )
            else:
                raise ValueError(f"unknown column kind {c['kind']!r}")
        t = doc["targets"]
        target = TargetEncoder(
            str(t["task"]), [str(n) for n in t["names"]], [_finite(v, "target mean") for v in t.get("mean", [])],
            [_finite(v, "target scale", positive=True) for v in t.get("scale", [])], list(t.get("classes", [])),
            int(t["outputs"]),
        )  # fmt: skip
        if target.task == "regression":
            if not len(target.names) == len(target.mean) == len(target.scale) == target.outputs >= 1:
                raise ValueError("the target's names, means, scales and outputs do not match in number")
        elif target.task == "classification":
            n = len(target.classes)
            if n < 2 or target.outputs not in ((1, 2) if n == 2 else (n,)) or len(target.names) != 1:
                raise ValueError(f"{n} classes with {target.outputs} outputs is not a classifier torchwork writes")
        else:
            raise ValueError(f"unknown task {target.task!r}")
        return cls(columns, numeric, categorical, target, str(doc.get("encoding", "codes")))
