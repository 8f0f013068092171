"""``option()``: one option declared once, as a dataclass field (default, help, CLI flag, check).

Training's ``TrainConfig`` and its methods' option dataclasses and evaluation's ``EvalConfig`` declare
their fields with ``option()``; the CLI generates each command's flags from those fields
(``nft_deploy.cli.options``) and ``check_field`` applies the declared checks, so a flag's name, default,
help and limits are written in one place.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from nft_deploy.errors import ConfigError

_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, help: str = "", *, flat: str | None = None, flag: str | bool | None = None,
           decls: tuple[str, ...] | None = None, cli_default: Any = _MISSING, check: str | None = None,
           choices: tuple[str, ...] | None = None, invert: bool = False, metavar: str | None = None,
           default_factory: Any = _MISSING) -> Any:
    """A dataclass field that declares one option: default, help and how it is checked and exposed.

    - ``help``: the command's ``--help`` text (the field's docstring may say more).
    - ``flat`` (method options only): the ``TrainConfig`` keyword and attribute, default the field name;
      methods that declare the same flat name share it (one flag, one value).
    - ``flag``: the CLI flag (default ``--`` + the flat name with dashes); ``False``: no flag (API only).
      ``decls``: click's parameter declarations when they are more than one flag (``-o``, ``--x/--y``, a
      parameter name); ``invert``: a bool field whose flag sets it False (``--quiet``).
    - ``cli_default``: the flag's default where it differs from the API's (``--output`` writes model.pt).
    - ``check``: ``"positive"``, ``"positive_int"`` or ``"nonneg"`` (None values pass); ``choices``: the
      allowed strings. Failures raise ``ConfigError`` naming the flag. ``metavar``: how ``--help`` shows the value.
    """
    meta = {"help": help, "flat": flat, "flag": flag, "decls": decls, "cli_default": cli_default, "check": check,
            "choices": choices, "invert": invert, "metavar": metavar}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flat_name(f: dataclasses.Field) -> str:
    """The ``TrainConfig`` keyword of a method option field."""
    return f.metadata.get("flat") or f.name


def flag_of(f: dataclasses.Field, name: str | None = None) -> str | None:
    """The option's CLI flag (``--ovf-n``), None where it has none."""
    flag = f.metadata.get("flag")
    if flag is False:
        return None
    if isinstance(flag, str):
        return flag
    return "--" + (name or flat_name(f)).replace("_", "-")


def label_of(f: dataclasses.Field, name: str | None = None) -> str:
    """How errors name the option: its flag, or the keyword where there is no flag."""
    return flag_of(f, name) or (name or flat_name(f))


def check_field(f: dataclasses.Field, value: Any, name: str | None = None) -> None:
    """Apply ``option(check=..., choices=...)`` to one value."""
    label = label_of(f, name)
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{label}: must be {' or '.join(choices)}, got {value!r}")
    check = f.metadata.get("check")
    if value is None or check is None:
        return
    if check == "nonneg":
        if not value >= 0:
            raise ConfigError(f"{label}: must be >= 0, got {value}")
    else:
        _positive(label, value, integer=check == "positive_int")


def option_type(owner: type, f: dataclasses.Field) -> Any:
    """The field's annotation, resolved (``from __future__ import annotations`` keeps strings)."""
    import sys

    hints = typing.get_type_hints(owner, vars(sys.modules[owner.__module__]))
    return hints[f.name]


def _positive(flag: str, value, integer: bool = False) -> None:
    bad = (integer and (not isinstance(value, int) or isinstance(value, bool))) or not value > 0
    if bad:
        raise ConfigError(f"{flag}: must be a positive {'integer' if integer else 'number'}, got {value!r}")
