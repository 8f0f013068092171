"""What each JSON key of a profile section allows, read once from the dataclasses of ``profile_types``.

The validator (``nft_deploy.profiles``) and the schema writer (``nft_deploy.profile_schema``) both walk
these specs, so a limit changed on a dataclass field changes both. Types come from the annotations,
defaults from the dataclass, limits from the field metadata.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any

from nft_deploy.profile_rules import JSON_ONLY, RULES, Rule

# Python annotation -> the JSON kind named in errors ("must be an int")
_KINDS = {bool: "bool", int: "int", float: "number", str: "string"}
LIMIT_KEYS = frozenset({"min", "max", "choices", "items", "required", "const", "nonblank"})


@dataclass(frozen=True)
class FieldSpec:
    """One JSON key: its kind, whether it must be present, what null means, its limits."""

    name: str
    kind: str
    """int, number, bool, string, array or object."""
    required: bool = False
    has_default: bool = False
    """A missing key means ``default`` (never for a required key)."""
    default: Any = None
    nullable: bool = False
    """null is accepted: it means None for an optional field, the default for a section."""
    optional: bool = False
    """The annotation allows None."""
    section: type | None = None
    """The dataclass of an object."""
    item: FieldSpec | None = None
    """The spec of one array item."""
    length: int | None = None
    """A fixed array length (tuple[float, float])."""
    limits: typing.Mapping[str, Any] = dataclasses.field(default_factory=dict)
    json_only: bool = False
    """A key the dataclass drops (``JSON_ONLY``)."""

    def null_value(self) -> Any:
        """What JSON null stands for here."""
        return None if self.optional else self.default


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported profile annotation {tp!r}")
        return rest[0], True
    return tp, False


def _spec(name: str, tp: Any, limits: typing.Mapping[str, Any], *, top: bool, **kw: Any) -> FieldSpec:
    """The spec of a value annotated ``tp``; ``top``: a section's own key (null may mean its default)."""
    tp, optional = _unwrap_optional(tp)
    own = {k: v for k, v in limits.items() if k != "items"}
    if dataclasses.is_dataclass(tp):
        return FieldSpec(name, "object", section=tp, nullable=optional or top, optional=optional, limits=own, **kw)
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        variadic = len(args) == 2 and args[1] is Ellipsis
        if not variadic and len(set(args)) != 1:
            raise TypeError(f"unsupported profile annotation {tp!r}")
        item = _spec(f"{name}[]", args[0], limits.get("items", {}), top=False)
        return FieldSpec(name, "array", item=item, length=None if variadic else len(args), nullable=optional,
                         optional=optional, limits=own, **kw)
    if tp not in _KINDS:
        raise TypeError(f"unsupported profile annotation {tp!r}")
    return FieldSpec(name, _KINDS[tp], nullable=optional, optional=optional, limits=own, **kw)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else MISSING


@functools.cache
def field_specs(cls: type) -> tuple[FieldSpec, ...]:
    """The JSON keys of section ``cls``: its dataclass fields, then its JSON-only keys."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        unknown = set(f.metadata) - LIMIT_KEYS
        if unknown:
            raise TypeError(f"{cls.__name__}.{f.name}: unknown limit {sorted(unknown)}")
        default = _default(f)
        required = default is MISSING or bool(f.metadata.get("required"))
        specs.append(_spec(f.name, hints[f.name], f.metadata, top=True, required=required,
                           has_default=not required, default=None if required else default))
    for j in JSON_ONLY.get(cls, ()):
        limits = {} if j.choices is None else {"choices": j.choices}
        specs.append(FieldSpec(j.name, "string", has_default=j.default is not None, default=j.default,
                               limits=limits, json_only=True))
    return tuple(specs)


def choices_of(limits: dict) -> tuple | None:
    """A field's allowed values; a callable is asked at validation time (the op-family registry, which
    code outside the package may extend)."""
    choices = limits.get("choices")
    return choices() if callable(choices) else choices


def rules_for(cls: type) -> tuple[Rule, ...]:
    """The rules between fields of section ``cls``."""
    return tuple(r for r in RULES if r.section is cls)
