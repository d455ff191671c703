"""Baselines a model is measured against, fitted on the same training rows.

Regression: :class:`LeastSquares` (closed form, or streamed chunk by chunk). Classification:
:class:`MajorityClass` (the training class frequencies) and :class:`LogisticRegression` (the
same objective and coefficients as scikit-learn's, fitted with L-BFGS in torch float64). Each
saves itself as plain JSON (``to_json``/``from_json``) so a run folder can hold it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from torchwork.core.checks import check
from torchwork.core.errors import InputError
from torchwork.evaluation.metrics import as_2d, as_codes


class LeastSquares:
    """Ordinary least squares with an intercept, solved in closed form (``numpy.linalg.lstsq``).

    ``fit`` solves at once; ``partial_fit`` (any number of chunks) then ``finish`` accumulates
    the normal equations in float64 and solves them, for tables that do not fit in memory.
    """

    alpha_ = 0.0  # the ridge penalty (:func:`ridge_on_validation`); 0: ordinary least squares
    val_mse_ = math.nan  # the validation rows' mean squared error that chose it (ridge only)

    def __init__(self) -> None:
        self._gram: np.ndarray | None = None
        self._cross: np.ndarray | None = None
        self._shift_x: np.ndarray | None = None
        self._shift_y: np.ndarray | None = None
        self.n_rows_ = 0

    def fit(self, X: Any, y: Any) -> LeastSquares:
        X = X.detach().cpu().numpy() if hasattr(X, "detach") else np.asarray(X)
        X = X.reshape(len(X), -1)
        A1 = np.empty((len(X), X.shape[1] + 1))  # [X 1] in float64, made at once (no float64 copy of X first)
        A1[:, :-1] = X
        A1[:, -1] = 1.0
        coef, *_ = np.linalg.lstsq(A1, as_2d(y), rcond=None)
        self.coef_, self.intercept_ = coef[:-1], coef[-1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        return as_2d(X) @ self.coef_ + self.intercept_

    def partial_fit(self, X: Any, y: Any) -> LeastSquares:
        """Adds a chunk of rows to the normal equations ``[X 1]ᵀ[X 1] b = [X 1]ᵀ y``.

        The rows are shifted by the first chunk's means before they are accumulated, which keeps
        the sums well conditioned when a column sits far from zero (the intercept absorbs the shift).
        """
        A, Y = as_2d(X), as_2d(y)
        if len(A) != len(Y):
            raise InputError(f"partial_fit: X has {len(A)} rows but y {len(Y)}")
        if len(A) == 0:
            return self
        if self._gram is None or self._cross is None or self._shift_x is None or self._shift_y is None:
            self._shift_x, self._shift_y = A.mean(axis=0), Y.mean(axis=0)
            d, k = A.shape[1], Y.shape[1]
            self._gram, self._cross = np.zeros((d + 1, d + 1)), np.zeros((d + 1, k))
        elif A.shape[1] != len(self._shift_x) or Y.shape[1] != len(self._shift_y):
            raise InputError(
                f"partial_fit: a chunk has {A.shape[1]} feature and {Y.shape[1]} target columns, "
                f"the first had {len(self._shift_x)} and {len(self._shift_y)}"
            )
        A1 = np.hstack([A - self._shift_x, np.ones((len(A), 1))])
        self._gram += A1.T @ A1
        self._cross += A1.T @ (Y - self._shift_y)
        self.n_rows_ += len(A)
        return self

    def finish(self) -> LeastSquares:
        """Solves the accumulated normal equations (``lstsq``: the least-norm solution if rank deficient)."""
        if self._gram is None or self._cross is None or self._shift_x is None or self._shift_y is None:
            raise InputError("finish: no rows were given to partial_fit")
        coef, *_ = np.linalg.lstsq(self._gram, self._cross, rcond=None)
        self.coef_ = coef[:-1]
        self.intercept_ = coef[-1] + self._shift_y - self._shift_x @ self.coef_
        return self

    def to_json(self) -> dict[str, Any]:
        """``{"coef": (d x k), "intercept": (k)}`` as lists: the run folder's ``baseline`` entry."""
        return {"coef": self.coef_.tolist(), "intercept": self.intercept_.tolist()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LeastSquares:
        ls = cls()
        ls.coef_ = np.asarray(doc["coef"], dtype=np.float64)
        ls.intercept_ = np.asarray(doc["intercept"], dtype=np.float64)
        return ls


# The ridge penalties tried, as fractions of the training rows: a standardized column's sum of
# squares is about n, so ``alpha = f * n`` shrinks a lone column's coefficient by ``1 / (1 + f)``.
RIDGE_FRACTIONS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
RIDGE_MAX_WORK = 10**11  # rows x columns² above which the ridge path is not tried (the Gram matrix's cost)


def ridge_on_validation(
    X: Any, y: Any, X_val: Any, y_val: Any, fractions: Sequence[float] = RIDGE_FRACTIONS
) -> LeastSquares | None:
    """Ridge regression (``min ‖y - Xb - c‖² + alpha ‖b‖²``, the intercept unpenalized: scikit-learn's
    ``Ridge(alpha)``) at the penalty of ``fractions`` (times the rows) with the lowest mean squared
    error on the validation rows, as a :class:`LeastSquares` with ``alpha_`` and ``val_mse_`` set.

    One eigendecomposition of the centered Gram matrix serves every penalty. None when the table is
    too wide for that (:data:`RIDGE_MAX_WORK`) or there are no validation rows.
    """
    A, Y = as_2d(X), as_2d(y)
    n, d = A.shape
    if len(X_val) == 0 or n * d * d > RIDGE_MAX_WORK:
        return None
    A_val, Y_val = as_2d(X_val), as_2d(y_val)
    mean_x, mean_y = A.mean(axis=0), Y.mean(axis=0)
    centered = A - mean_x
    eigenvalues, V = np.linalg.eigh(centered.T @ centered)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    projected = V.T @ (centered.T @ (Y - mean_y))
    shifted_val = A_val - mean_x
    best: tuple[float, float, np.ndarray] | None = None
    for fraction in fractions:
        alpha = float(fraction) * n
        coef = V @ (projected / (eigenvalues + alpha)[:, None])
        mse = float(np.mean((shifted_val @ coef + mean_y - Y_val) ** 2))
        if best is None or mse < best[0]:
            best = (mse, alpha, coef)
    assert best is not None
    model = LeastSquares()
    model.val_mse_, model.alpha_, model.coef_ = best
    model.intercept_ = mean_y - mean_x @ model.coef_
    return model


def _check_n_classes(n_classes: Any, where: str) -> int:
    return int(check(n_classes, "count", where))


class MajorityClass:
    """Predicts the training class frequencies for every row (so its log loss means something).

    The predicted class is the most frequent one, ties to the lowest code, as an argmax would pick.
    """

    def fit(self, y: Any, n_classes: int) -> MajorityClass:
        n_classes = _check_n_classes(n_classes, "MajorityClass.fit(n_classes=...)")
        codes = as_codes(y, n_classes, "y")
        if len(codes) == 0:
            raise InputError("MajorityClass.fit: y has no rows")
        self.frequencies_ = np.bincount(codes, minlength=n_classes) / len(codes)
        return self

    @property
    def class_(self) -> int:
        return int(np.argmax(self.frequencies_))

    def predict_proba(self, X: Any) -> np.ndarray:
        """The training frequencies, one row per row of X, shape (n, n_classes)."""
        return np.tile(self.frequencies_, (len(X), 1))

    def predict(self, X: Any) -> np.ndarray:
        return np.full(len(X), self.class_, dtype=np.int64)

    def to_json(self) -> dict[str, Any]:
        return {"frequencies": self.frequencies_.tolist()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> MajorityClass:
        model = cls()
        model.frequencies_ = np.asarray(doc["frequencies"], dtype=np.float64)
        return model


class LogisticRegression:
    """L2-penalized logistic regression with the objective of scikit-learn's ``LogisticRegression(C=C)``.

    Minimizes ``C * sum(log loss) + ½‖W‖²`` (the intercept is not penalized): one logit and a
    sigmoid for two classes, a softmax over every class for more, exactly as scikit-learn does,
    so ``coef_`` (shape (1, d) or (K, d)) and ``intercept_`` compare with its attributes. Full-batch
    L-BFGS (strong Wolfe line search) in torch float64, from zeros, until the largest gradient
    entry of the per-row objective is below ``tol`` or no step lowers it in float64: deterministic,
    and fast on thousands of rows.

    Like scikit-learn, the model is fitted on the classes present in y (``classes_``); a class
    of ``n_classes`` with no training rows gets probability 0.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-10) -> None:
        self.C = check(C, "positive", "LogisticRegression(C=...)")
        self.max_iter = check(max_iter, "count", "LogisticRegression(max_iter=...)")
        self.tol = check(tol, "positive", "LogisticRegression(tol=...)")

    def fit(self, X: Any, y: Any, n_classes: int) -> LogisticRegression:
        """Fits on features X (n, d) and class codes y (n,) in 0..n_classes-1."""
        n_classes = _check_n_classes(n_classes, "LogisticRegression.fit(n_classes=...)")
        A = as_2d(X)
        codes = as_codes(y, n_classes, "y")
        if len(A) != len(codes):
            raise InputError(f"LogisticRegression.fit: X has {len(A)} rows but y {len(codes)}")
        if not np.all(np.isfinite(A)):
            raise InputError("LogisticRegression.fit: X has NaN or infinite values")
        classes = np.unique(codes)
        if len(classes) < 2:
            raise InputError(f"LogisticRegression.fit: y needs at least 2 classes, got {classes.tolist()}")
        self.n_classes_ = n_classes
        self.classes_ = classes
        self.coef_, self.intercept_, self.n_iter_ = self._lbfgs(A, np.searchsorted(classes, codes), len(classes))
        return self

    def _lbfgs(self, A: np.ndarray, target: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Minimizes the per-row objective ``mean(log loss) + ‖W‖² / (2 C n)`` (same minimizer)."""
        n, d = A.shape
        rows = 1 if k == 2 else k
        X = torch.from_numpy(np.ascontiguousarray(A))
        W = torch.zeros(rows, d, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(rows, dtype=torch.float64, requires_grad=True)
        t = torch.from_numpy(target.astype(np.float64) if k == 2 else target.astype(np.int64))
        reg = 0.0 if math.isinf(self.C) else 1.0 / (self.C * n)
        max_eval = 2 * self.max_iter
        opt = torch.optim.LBFGS(
            [W, b],
            lr=1.0,
            max_iter=self.max_iter,
            max_eval=max_eval,
            tolerance_grad=self.tol,
            tolerance_change=0.0,  # stop on the gradient only (or when no step makes progress)
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def objective() -> torch.Tensor:
            opt.zero_grad()
            z = torch.addmm(b, X, W.T)
            loss = F.binary_cross_entropy_with_logits(z[:, 0], t) if k == 2 else F.cross_entropy(z, t)
            loss = loss + 0.5 * reg * (W * W).sum()
            loss.backward()
            return loss

        opt.step(objective)
        objective()
        assert W.grad is not None and b.grad is not None
        worst = max(float(W.grad.abs().max()), float(b.grad.abs().max()))
        state = opt.state[W]
        n_iter = int(state.get("n_iter", 0))
        # L-BFGS stops at tol, or when the line search finds no lower objective in float64 (typically with
        # a gradient near 1e-10, the optimum to float64 precision); only running out of iterations fails.
        self.converged_ = worst <= self.tol or (n_iter < self.max_iter and int(state.get("func_evals", 0)) < max_eval)
        if not self.converged_:
            warnings.warn(
                f"LogisticRegression: L-BFGS used all {self.max_iter} iterations and stopped with a gradient of "
                f"{worst:.3g} (> tol {self.tol:g}); raise max_iter or scale the features",
                RuntimeWarning,
                stacklevel=3,
            )
        coef, intercept = W.detach().numpy().copy(), b.detach().numpy().copy()
        if rows > 1:
            intercept -= intercept.mean()  # softmax is unchanged; scikit-learn's intercepts also sum to 0
        return coef, intercept, n_iter

    def decision_function(self, X: Any) -> np.ndarray:
        """The logits, (n,) for a binary model, (n, K) otherwise, as scikit-learn returns them."""
        z = as_2d(X) @ self.coef_.T + self.intercept_
        return z[:, 0] if len(self.coef_) == 1 else z

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, n_classes); classes absent from the training rows get 0."""
        z = self.decision_function(X)
        if z.ndim == 1:
            p1 = np.exp(-np.logaddexp(0.0, -z))
            fitted = np.stack([1.0 - p1, p1], axis=1)
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            fitted = e / e.sum(axis=1, keepdims=True)
        proba = np.zeros((len(fitted), self.n_classes_))
        proba[:, self.classes_] = fitted
        return proba

    def predict(self, X: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def to_json(self) -> dict[str, Any]:
        return {
            "C": None if math.isinf(self.C) else self.C,  # None: no penalty (JSON has no infinity)
            "max_iter": self.max_iter,
            "tol": self.tol,
            "n_classes": self.n_classes_,
            "classes": self.classes_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LogisticRegression:
        model = cls(C=math.inf if doc["C"] is None else doc["C"], max_iter=doc["max_iter"], tol=doc["tol"])
        model.n_classes_ = int(doc["n_classes"])
        model.classes_ = np.asarray(doc["classes"], dtype=np.int64)
        model.coef_ = np.asarray(doc["coef"], dtype=np.float64)
        model.intercept_ = np.asarray(doc["intercept"], dtype=np.float64)
        model.n_iter_, model.converged_ = 0, True
        return model


MAX_TREE_CATEGORIES = 255  # HistGradientBoosting's max_bins: a column with more codes is split as numbers


def sklearn_missing() -> str | None:
    """Why the gradient-boosted trees cannot be fitted here (scikit-learn is an optional extra), or None."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return "scikit-learn is not installed (pip install 'torchwork[sklearn]')"
    return None


class GradientBoostedTrees:
    """scikit-learn's ``HistGradientBoostingRegressor``/``Classifier`` at its defaults, the baseline a
    practitioner reaches for on a table: categorical columns split natively (``categorical_features``),
    early stopping as scikit-learn decides (``"auto"``: on above 10,000 rows, on 10 % of the training
    rows), seeded. One regressor per target column.

    Threads: scikit-learn's OpenMP runtime is not torch's, and on a busy machine the two pools'
    spinning threads fight: a 300-row fit measured 0.16 s on one thread and 11 to 34 s on the
    default two beside torch. So a small table (at most ``ONE_THREAD_CELLS`` rows x columns) is
    fitted and predicted on one OpenMP thread, limited only around those calls (``threadpoolctl``);
    a larger one keeps OpenMP's default.

    Not saved in the run folder (trees are not plain JSON, and a pickle runs code): its metrics on
    each split are recorded when the run is trained.
    """

    ONE_THREAD_CELLS = 1_000_000

    def __init__(self, task: str, categorical: Sequence[bool], seed: int = 0) -> None:
        if task not in ("regression", "classification"):
            raise InputError(f"GradientBoostedTrees: unknown task {task!r}")
        self.task, self.categorical, self.seed = task, list(categorical), int(seed)

    def _new(self) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        kind = HistGradientBoostingRegressor if self.task == "regression" else HistGradientBoostingClassifier
        mask = self.categorical if any(self.categorical) else None
        return kind(categorical_features=mask, random_state=self.seed % 2**32)  # its range: 32 bits

    def _threads(self) -> Any:
        """One OpenMP thread while a small table's trees are fitted or used; OpenMP's default otherwise."""
        import contextlib

        if self.threads_ is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

        return threadpool_limits(limits=self.threads_, user_api="openmp")

    def fit(self, X: Any, y: Any, n_classes: int | None = None) -> GradientBoostedTrees:
        A = as_2d(X)
        if A.shape[1] != len(self.categorical):
            raise InputError(
                f"GradientBoostedTrees.fit: X has {A.shape[1]} columns, categorical {len(self.categorical)}"
            )
        self.threads_ = 1 if A.size <= self.ONE_THREAD_CELLS else None
        with self._threads():
            return self._fit(A, y, n_classes)

    def _fit(self, A: np.ndarray, y: Any, n_classes: int | None) -> GradientBoostedTrees:
        if self.task == "regression":
            Y = as_2d(y)
            self.models_ = [self._new().fit(A, Y[:, j]) for j in range(Y.shape[1])]
        else:
            self.n_classes_ = _check_n_classes(n_classes, "GradientBoostedTrees.fit(n_classes=...)")
            codes = as_codes(y, self.n_classes_, "y")
            if len(np.unique(codes)) < 2:
                raise InputError("GradientBoostedTrees.fit: y needs at least 2 classes")
            self.models_ = [self._new().fit(A, codes)]
        self.n_iter_ = [int(m.n_iter_) for m in self.models_]
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Regression: (n, k), one column per target; classification: the class codes (n,)."""
        if self.task == "classification":
            return np.argmax(self.predict_proba(X), axis=1)
        A = as_2d(X)
        with self._threads():
            return np.column_stack([m.predict(A) for m in self.models_]).astype(np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, n_classes); classes absent from the training rows get 0."""
        model = self.models_[0]
        proba = np.zeros((len(X), self.n_classes_))
        with self._threads():
            proba[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(as_2d(X))
        return proba
