"""The training-method registry: ``@register_method("name", config=NameConfig)`` and its read-only views.

A method is a class plus its option dataclass (``option()`` fields); registering it makes it selectable as
``TrainConfig(method="name")`` and ``nft-deploy train --method name`` with its options as keywords and flags.
The registry is the one list of methods: ``METHOD_NAMES``, ``METHODS`` and the CLI's flags derive from it.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nft_deploy.errors import ConfigError
from nft_deploy.options import flat_name


@dataclass(frozen=True)
class MethodSpec:
    """One registered method: its name, its class (built by ``cls.from_options(options, context)``) and
    its option dataclass."""

    name: str
    cls: type
    config: type


_REGISTRY: dict[str, MethodSpec] = {}
_CLASSES: dict[str, type] = {}
_VERSION = [0]


def register_method(name: str, *, config: type | None = None) -> Callable[[type], type]:
    """Class decorator: make ``cls`` selectable as ``--method name`` / ``TrainConfig(method=name)``.

    ``config`` is the method's option dataclass (``option()`` fields; None: no options). The class must
    implement the ``Method`` protocol (``nft_deploy.training.methods``) and a classmethod
    ``from_options(options, context) -> instance`` (``SimpleMethod`` provides one that passes the options'
    fields of the same names). Its options become ``TrainConfig`` keywords and ``nft-deploy train`` flags.
    """
    config = config or NoOptions
    if not (dataclasses.is_dataclass(config) and isinstance(config, type)):
        raise TypeError(f"register_method({name!r}): config must be a dataclass type, got {config!r}")
    from nft_deploy.training.config import (
        TrainFields,  # the general options, which method options must not shadow
    )

    general = {f.name for f in dataclasses.fields(TrainFields)}
    for f in dataclasses.fields(config):
        if flat_name(f) in general:
            raise ValueError(f"register_method({name!r}): option {flat_name(f)!r} clashes with a TrainConfig field")

    def decorate(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"method {name!r} is already registered ({_REGISTRY[name].cls.__qualname__})")
        if not callable(getattr(cls, "from_options", None)):
            raise TypeError(f"register_method({name!r}): {cls.__qualname__} needs a from_options(options, context) "
                            "classmethod (or derive from SimpleMethod)")
        cls.name = name
        _REGISTRY[name] = MethodSpec(name, cls, config)
        _CLASSES[name] = cls
        _VERSION[0] += 1
        return cls

    return decorate


def unregister_method(name: str) -> None:
    """Remove a registered method (tests and plugins that register temporarily)."""
    _REGISTRY.pop(name, None)
    _CLASSES.pop(name, None)
    _VERSION[0] += 1


def method_spec(name: str) -> MethodSpec:
    """The registered method ``name``; ConfigError listing the choices otherwise."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ConfigError(f"--method: unknown method {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return spec


def registered_methods() -> tuple[MethodSpec, ...]:
    """Every registered method, in registration order (the built-ins first)."""
    return tuple(_REGISTRY.values())


def registry_version() -> int:
    """Changes whenever a method is registered or removed (the CLI regenerates its flags then)."""
    return _VERSION[0]


METHODS: Mapping[str, type] = types.MappingProxyType(_CLASSES)
"""Read-only live view: method name -> class."""


def method_option_fields() -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Flat name -> [(method, field)] over every registered method, in registration order."""
    out: dict[str, list[tuple[str, dataclasses.Field]]] = {}
    for spec in _REGISTRY.values():
        for f in dataclasses.fields(spec.config):
            out.setdefault(flat_name(f), []).append((spec.name, f))
    return out


@dataclass(frozen=True)
class NoOptions:
    """The option dataclass of a method without options."""
