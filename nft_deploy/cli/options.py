"""Click options generated from ``option()`` dataclass fields (``nft_deploy.options``).

A field's flag, default, help and type are declared once, on the dataclass; ``make_option`` turns one field
into a click option, and ``config_options`` / ``config_from`` do it for a whole plain config dataclass
(``EvalConfig``). Comma-separated values of tuple options are split here, so a bad list is one ``Error:``
line (exit 1), not a usage error.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import click

from nft_deploy.errors import ConfigError
from nft_deploy.options import flag_of, option_type

GENERAL = "Options"


def _floats(flag: str, text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a comma-separated list of numbers") from None


def _ints(flag: str, text: str | None) -> tuple[int, ...] | None:
    vals = _floats(flag, text)
    if vals is not None and any(v != int(v) or v < 1 for v in vals):
        raise ConfigError(f"{flag}: {text!r}: give positive integers, comma-separated")
    return None if vals is None else tuple(int(v) for v in vals)


def _strs(flag: str, text: str | None) -> tuple[str, ...] | None:
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else None


_LISTS = {float: _floats, int: _ints, str: _strs}


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one generated click parameter maps back onto a TrainConfig keyword."""

    keyword: str
    """The config keyword it sets (a field, or a flat method option of TrainConfig)."""
    flag: str
    parse: Any = None
    """Comma-separated text -> tuple (None: click's value as is)."""
    invert: bool = False


def _scalar(tp: Any) -> tuple[Any, bool]:
    """(click type or element type, is a tuple) of a field annotation; ``X | None`` is X."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if str in args or len(args) != 1:
            return str, False  # str | Path | DeviceProfile: given as text
        tp = args[0]
        args = list(typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return args[0] if args else str, True
    return tp if tp in (int, float, bool, str) else str, False


def option_spec(owner: type, f: dataclasses.Field, keyword: str) -> tuple[list[str], dict[str, Any], Flag] | None:
    """(click declarations, click keyword arguments, Flag) of one ``option()`` field; None when it has no flag."""
    flag = flag_of(f, keyword)
    if flag is None:
        return None
    meta = f.metadata
    tp, is_list = _scalar(option_type(owner, f))
    default = meta.get("cli_default", dataclasses.MISSING)
    if default is dataclasses.MISSING:
        default = f.default if f.default is not dataclasses.MISSING else None
    decls = list(meta.get("decls") or (flag,))
    kwargs: dict[str, Any] = {"help": meta.get("help") or None, "metavar": meta.get("metavar")}
    if tp is bool and not any("/" in d for d in decls):
        kwargs.update(is_flag=True)
    elif tp is bool:
        kwargs.update(default=default)
    else:
        if is_list and default is not None:
            default = ",".join(str(v) for v in default)
        kwargs.update(type=str if is_list else tp, default=default, show_default=default is not None)
    parse = (lambda text, _p=_LISTS.get(tp, _strs), _f=flag: _p(_f, text)) if is_list else None
    return decls, kwargs, Flag(keyword, flag, parse, bool(meta.get("invert")))


def make_option(owner: type, f: dataclasses.Field, keyword: str, group: str) -> tuple[click.Option, Flag] | None:
    """The click option of one field, listed under ``group`` in ``--help``; None when it has no flag."""
    spec = option_spec(owner, f, keyword)
    if spec is None:
        return None
    decls, kwargs, flag = spec
    opt = click.Option(decls, **kwargs)
    opt.nft_group = group  # type: ignore[attr-defined]  # the --help section
    return opt, flag


def config_options(owner: type, skip: tuple[str, ...] = ()):
    """Decorator: one generated option per flagged field of the dataclass ``owner`` (except ``skip``), in
    field order; each option's parameter name is the field name, or the name its ``decls`` give (``--output``
    of ``EvalConfig.output`` is ``output_name``: ``output`` names a file every command checks is writable)."""

    def deco(fn):
        for f in reversed(dataclasses.fields(owner)):
            spec = None if f.name in skip else option_spec(owner, f, f.name)
            if spec is not None:
                fn = click.option(*spec[0], **spec[1])(fn)
        return fn

    return deco


def config_from(owner: type, kw: dict[str, Any], **given: Any) -> Any:
    """``owner(**given, **fields)`` from parsed click values, popping each field's value out of ``kw``."""
    for f in dataclasses.fields(owner):
        spec = option_spec(owner, f, f.name)
        param = next((d for d in spec[0] if not d.startswith("-")), f.name) if spec else f.name
        if spec is None or param not in kw:
            continue
        flag, value = spec[2], kw.pop(param)
        given[f.name] = flag.parse(value) if flag.parse is not None else (not value if flag.invert else value)
    return owner(**given)
