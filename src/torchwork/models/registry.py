"""Models: the tutorial's two linear models, a linear layer, an MLP, and your own ``nn.Module``.

A model is described by a plain spec, ``{"name": "mlp", "args": {...}}``,
``{"class": "package.module:Class", "args": {...}}`` or ``{"factory": "package.module:function",
"args": {...}}``, so that a saved model records its architecture as data and can be rebuilt
from it. A model you built yourself (an instance) records its class and ``"args": null``: it is
rebuilt from what you pass to ``load_run(model=...)``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import operator
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from torchwork.core.checks import Registry
from torchwork.core.errors import InputError, UnsafeFileError, one_line
from torchwork.models.tabular import MLP, TabularLinear
from torchwork.models.tutorial import LinearRegressionModel, LinearRegressionModelV2


def _tutorial(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(in_features: int = 1, out_features: int = 1, categories: list[int] | None = None) -> nn.Module:
        if in_features != 1 or out_features != 1 or categories:  # a run passes its (no) category columns
            n = in_features + len(categories or [])
            raise InputError(f"model {cls.__name__} fits one numeric feature to one target, got {n} features")
        return cls()

    return build


MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.add("linear", TabularLinear)
MODELS.add("mlp", MLP)
MODELS.add("tutorial", _tutorial(LinearRegressionModel), aliases=("linearregressionmodel",))
MODELS.add("tutorial_v2", _tutorial(LinearRegressionModelV2), aliases=("linearregressionmodelv2",))


@contextlib.contextmanager
def _current_folder_importable() -> Iterator[None]:
    """The current folder on the import path for one import (``python -m torchwork`` removes it)."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def import_object(path: str, what: str = "model") -> Any:
    """Import ``package.module:name`` (dotted names allowed after the colon).

    Called only with consent (a class you named, or ``--trust-model-code``); a module in the
    current folder is found, as ``python script.py`` would find it.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr or module_name.startswith(".") or "\x00" in path:
        raise InputError(f"{what} {path!r}: expected a registered name or 'package.module:Class'")
    if module_name == "__main__":
        raise InputError(
            f"{what} {path!r}: the class was defined in a script (__main__), which cannot be imported again: "
            "load the run with torchwork.load_run(path, model=<the class>)"
        )
    try:
        with _current_folder_importable():
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{what} {path!r}: cannot import module {module_name!r} ({exc})") from None
    except Exception as exc:  # its code ran and failed: say so in one line
        raise InputError(f"{what} {path!r}: importing {module_name!r} failed ({type(exc).__name__}: {exc})") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise InputError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}")
    return obj


def import_class(path: str) -> type[nn.Module]:
    """Import ``package.module:Class`` and check that it is an ``nn.Module`` subclass."""
    obj = import_object(path)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise InputError(f"model {path!r} is not an nn.Module subclass")
    return obj


def object_path(obj: Any) -> str:
    """``module:QualifiedName`` of a class or function (``__main__:Net`` for one defined in a script)."""
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def importable(obj: Any) -> bool:
    """True if :func:`object_path` of ``obj`` imports back to ``obj`` itself (without importing anything new)."""
    module_name, _, attr = object_path(obj).partition(":")
    module = sys.modules.get(module_name)
    if module is None or module_name == "__main__" or "<locals>" in attr:
        return False
    found: Any = module
    for part in attr.split("."):
        found = getattr(found, part, None)
    return found is obj


def accepts(cls: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def layout_args(builder: Callable[..., Any], in_features: int, out_features: int, **args: Any) -> dict[str, Any]:
    """The arguments a class or factory gets: ``in_features``/``out_features`` (and ``categories``) if it takes them."""
    full = dict(args)
    categories = full.pop("categories", None)
    if accepts(builder, "in_features"):
        full.setdefault("in_features", in_features)
    if accepts(builder, "out_features"):
        full.setdefault("out_features", out_features)
    if categories is not None and accepts(builder, "categories"):
        full.setdefault("categories", categories)
    return full


def model_spec(name: str, in_features: int, out_features: int = 1, **args: Any) -> dict[str, Any]:
    """The plain, JSON-ready description of a model: what :func:`build_model` needs to rebuild it."""
    if ":" in name:
        return {"class": name, "args": layout_args(import_class(name), in_features, out_features, **args)}
    canonical = MODELS.canonical(name)
    return {"name": canonical, "args": {"in_features": in_features, "out_features": out_features, **args}}


def model_from(given: Any, in_features: int, out_features: int, **args: Any) -> tuple[nn.Module, dict[str, Any]]:
    """A model from your class, factory or instance, and the spec that rebuilds it (``args`` None for an instance)."""
    if isinstance(given, nn.Module):
        return given, {"class": object_path(type(given)), "args": None, "given": "instance"}
    if not callable(given):
        raise InputError(f"model {given!r}: expected a name, 'package.module:Class', a class, a factory or a module")
    kind = "class" if isinstance(given, type) else "factory"
    full = layout_args(given, in_features, out_features, **args)
    try:
        model = given(**full)
    except TypeError as exc:
        raise InputError(f"model {object_path(given)!r}: bad arguments ({exc})") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"model {object_path(given)!r}: returned a {type(model).__name__}, not an nn.Module")
    return model, {kind: object_path(given), "args": full, "given": kind}


def rebuild(spec: dict[str, Any], given: Any) -> nn.Module:
    """A run's model from what you pass to ``load_run(model=...)``: a class, a factory or an instance."""
    if isinstance(given, nn.Module):
        return given
    args = spec.get("args")
    if args is None:
        raise InputError(
            f"the run's model was an instance of {spec.get('class')!r}, made by you: pass a new instance (model=...)"
        )
    model = given(**args)
    if not isinstance(model, nn.Module):
        raise InputError(f"model=: returned a {type(model).__name__}, not an nn.Module")
    return model


def build_model(spec: dict[str, Any], *, trust_code: bool = True, seed: int | None = None) -> nn.Module:
    """Build the module a spec describes (see :func:`model_spec`), its initial weights drawn from ``seed``.

    A spec naming a class or factory outside torchwork imports it, which runs its module's
    code: pass ``trust_code=False`` for specs read from files, to refuse that.
    """
    if seed is not None:
        torch.manual_seed(seed)
    if not isinstance(spec, dict):
        raise InputError("model spec: expected a table")
    args = spec.get("args", {})
    if "class" in spec or "factory" in spec:
        path = spec.get("class") or spec.get("factory")
        if not isinstance(path, str):
            raise InputError("model spec: 'class' must be a 'package.module:Class' string")
        if not trust_code:
            raise UnsafeFileError(
                f"the model names {path!r}; importing it runs that module's code: "
                "pass --trust-model-code (trust_model_code=True) if you trust it"
            )
        if args is None:
            raise InputError(
                f"the run's model was an instance of {path!r} made by you: load it with "
                "torchwork.load_run(path, model=<a new instance>)"
            )
        builder = import_class(path) if "class" in spec else import_object(path, "factory")
        return _call(builder, args, path)
    if "name" not in spec or not isinstance(spec["name"], str):
        raise InputError("model spec needs 'name' or 'class'")
    if not isinstance(args, dict):
        raise InputError(f"model {spec['name']!r}: its arguments must be a table")
    args = dict(args)
    if "hidden" in args:
        try:  # integers only: int() would take '64' or 1e300 (a forged model.json) and fail later, less clearly
            args["hidden"] = [operator.index(h) for h in args["hidden"]]
        except TypeError:
            raise InputError(f"model {spec['name']!r}: bad arguments (hidden: expected a list of integers, "
                             f"got {args['hidden']!r:.100})") from None  # fmt: skip
    return _call(MODELS.get(spec["name"]), args, spec["name"])


def _call(builder: Callable[..., Any], args: Any, name: str) -> nn.Module:
    if not isinstance(args, dict):
        raise InputError(f"model {name!r}: its arguments must be a table")
    try:
        model = builder(**args)
    except (TypeError, ValueError, OverflowError, RuntimeError, IndexError) as exc:  # torch's, for sizes < 1
        # torch's errors go on with a C++ backtrace: the first line
        raise InputError(f"model {name!r}: bad arguments ({one_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"model {name!r}: gave a {type(model).__name__}, not an nn.Module")
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
