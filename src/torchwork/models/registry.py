"""Models: the tutorial's two linear models, a linear layer, an MLP, and your own ``nn.Module``.

A model is described by a plain spec, ``{"name": "mlp", "args": {...}}`` or
``{"class": "package.module:Class", "args": {...}}``, so that a saved model records its
architecture as data and can be rebuilt from it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchwork.core.errors import InputError, UnsafeFileError
from torchwork.core.registry import Registry
from torchwork.models.mlp import ACTIVATIONS, MLP
from torchwork.models.tutorial import LinearRegressionModel, LinearRegressionModelV2

__all__ = ["ACTIVATIONS", "MLP", "MODELS", "LinearRegressionModel", "LinearRegressionModelV2", "build_model",
           "count_parameters", "model_spec"]  # fmt: skip


def _linear(in_features: int, out_features: int = 1) -> nn.Module:
    return nn.Linear(in_features, out_features)


def _tutorial(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(in_features: int = 1, out_features: int = 1) -> nn.Module:
        if in_features != 1 or out_features != 1:
            raise InputError(f"model {cls.__name__} fits one feature to one target, got {in_features} features")
        return cls()

    return build


MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.add("linear", _linear)
MODELS.add("mlp", MLP)
MODELS.add("tutorial", _tutorial(LinearRegressionModel), aliases=("linearregressionmodel",))
MODELS.add("tutorial_v2", _tutorial(LinearRegressionModelV2), aliases=("linearregressionmodelv2",))


def import_class(path: str) -> type[nn.Module]:
    """Import ``package.module:Class`` and check that it is an ``nn.Module`` subclass."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"model {path!r}: expected a registered name or 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"model {path!r}: cannot import module {module_name!r} ({exc})") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise InputError(f"model {path!r}: module {module_name!r} has no attribute {attr!r}")
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise InputError(f"model {path!r} is not an nn.Module subclass")
    return obj


def _accepts(cls: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def model_spec(name: str, in_features: int, out_features: int = 1, **args: Any) -> dict[str, Any]:
    """The plain, JSON-ready description of a model: what :func:`build_model` needs to rebuild it."""
    if ":" in name:
        cls = import_class(name)
        full = dict(args)
        if _accepts(cls, "in_features"):
            full.setdefault("in_features", in_features)
        if _accepts(cls, "out_features"):
            full.setdefault("out_features", out_features)
        return {"class": name, "args": full}
    canonical = MODELS.canonical(name)
    return {"name": canonical, "args": {"in_features": in_features, "out_features": out_features, **args}}


def build_model(spec: dict[str, Any], *, trust_code: bool = True, seed: int | None = None) -> nn.Module:
    """Build the module a spec describes (see :func:`model_spec`), its initial weights drawn from ``seed``.

    A spec naming a class outside torchwork imports that class's module, which runs its
    code: pass ``trust_code=False`` for specs read from files, to refuse that.
    """
    if seed is not None:
        torch.manual_seed(seed)
    args = dict(spec.get("args", {}))
    if "class" in spec:
        if not trust_code:
            raise UnsafeFileError(
                f"the model names the class {spec['class']!r}; importing it runs that module's code: "
                "pass --trust-model-code (trust_model_code=True) if you trust it"
            )
        cls = import_class(spec["class"])
        try:
            return cls(**args)
        except TypeError as exc:
            raise InputError(f"model {spec['class']!r}: bad constructor arguments ({exc})") from None
    if "name" not in spec:
        raise InputError("model spec needs 'name' or 'class'")
    builder = MODELS.get(spec["name"])
    if "hidden" in args:
        args["hidden"] = [int(h) for h in args["hidden"]]
    try:
        return builder(**args)
    except TypeError as exc:
        raise InputError(f"model {spec['name']!r}: bad arguments ({exc})") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
