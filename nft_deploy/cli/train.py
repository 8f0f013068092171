"""``nft-deploy train``: a thin click layer over ``nft_deploy.training.train``.

The flags are generated from the option dataclasses (``nft_deploy.training.config.option``): one per
``TrainConfig`` field (the general options) and one per flagged option of every registered method, with
the declared default and help; ``--help`` lists the methods' options in one section per method. A method
registered later (a plug-in) gets its flags the next time the command is parsed. Comma-separated values of
tuple options are split here, so a bad list is one ``Error:`` line (exit 1), not a usage error.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import click

from nft_deploy.errors import ConfigError

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
class _Flag:
    """How one generated click parameter maps back onto a TrainConfig keyword."""

    keyword: str
    """TrainConfig keyword (a general field or a flat method option)."""
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


def _make_option(owner: type, f: dataclasses.Field, keyword: str, group: str) -> tuple[click.Option, _Flag] | None:
    from nft_deploy.training.config import flag_of, option_type

    flag = flag_of(f, keyword)
    if flag is None:
        return None
    meta = f.metadata
    tp, is_list = _scalar(option_type(owner, f))
    default = meta.get("cli_default", dataclasses.MISSING)
    if default is dataclasses.MISSING:
        default = f.default if f.default is not dataclasses.MISSING else None
    decls = list(meta.get("decls") or (flag,))
    kwargs: dict[str, Any] = {"help": meta.get("help") or None}
    invert = bool(meta.get("invert"))
    if tp is bool and not any("/" in d for d in decls):
        kwargs.update(is_flag=True)
    elif tp is bool:
        kwargs.update(default=default)
    else:
        if is_list and default is not None:
            default = ",".join(str(v) for v in default)
        kwargs.update(type=str if is_list else tp, default=default, show_default=default is not None)
    opt = click.Option(decls, **kwargs)
    opt.nft_group = group  # type: ignore[attr-defined]  # the --help section
    parse = (lambda text, _p=_LISTS.get(tp, _strs), _f=flag: _p(_f, text)) if is_list else None
    return opt, _Flag(keyword, flag, parse, invert)


def _generate() -> tuple[list[click.Parameter], dict[str, _Flag]]:
    """The click options of every TrainConfig field and registered method option (flat names once)."""
    from nft_deploy.training.config import TrainFields, flag_of, flat_name, registered_methods

    params: list[click.Parameter] = []
    flags: dict[str, _Flag] = {}
    specs = registered_methods()
    for f in dataclasses.fields(TrainFields):
        made = _make_option(TrainFields, f, f.name, GENERAL)
        if made is None:
            continue
        if f.name == "method":
            made[0].help = ", ".join(s.name for s in specs) + "."
        params.append(made[0])
        flags[made[0].name] = made[1]
    seen: set[str] = set()
    shared: dict[str, list[str]] = {}  # method -> flat names it declares that another's flag sets
    for spec in specs:
        for f in dataclasses.fields(spec.config):
            keyword = flat_name(f)
            if keyword in seen:
                shared.setdefault(spec.name, []).append(keyword)
                continue  # shared with an earlier method (beta, gammas): one flag, listed under that method
            made = _make_option(spec.config, f, keyword, f"Options of --method {spec.name}")
            if made is None:
                if keyword in (flat_name(g) for s in specs for g in dataclasses.fields(s.config) if flag_of(g)):
                    shared.setdefault(spec.name, []).append(keyword)  # temperature's N: --ovf-n
                continue
            seen.add(keyword)
            params.append(made[0])
            flags[made[0].name] = made[1]
    by_keyword = {f.keyword: f.flag for f in flags.values()}
    for p in params:
        group = getattr(p, "nft_group", GENERAL)
        name = group.removeprefix("Options of --method ")
        if name in shared:
            p.nft_group = f"{group} (also {', '.join(by_keyword[k] for k in shared[name] if k in by_keyword)})"
    return params, flags


class _TrainCommand(click.Command):
    """A command whose options are generated from the registry (again whenever it changes)."""

    _generated: tuple[int, list[click.Parameter], dict[str, _Flag]] | None = None

    def _current(self) -> tuple[list[click.Parameter], dict[str, _Flag]]:
        from nft_deploy.training.config import registry_version

        version = registry_version()
        if self._generated is None or self._generated[0] != version:
            self._generated = (version, *_generate())
        return self._generated[1], self._generated[2]

    @property
    def params(self) -> list[click.Parameter]:  # type: ignore[override]
        return self._current()[0]

    @params.setter
    def params(self, value) -> None:  # click.Command.__init__ sets [], the generated ones stand
        pass

    def flags(self) -> dict[str, _Flag]:
        """Click parameter name -> the TrainConfig keyword it sets."""
        return self._current()[1]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {GENERAL: []}
        for p in self.get_params(ctx):
            record = p.get_help_record(ctx)
            if record:
                sections.setdefault(getattr(p, "nft_group", GENERAL), []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def config_from_params(command: _TrainCommand, params: dict[str, Any]):
    """The TrainConfig that parsed CLI values stand for (tuple lists split, --quiet inverted)."""
    from nft_deploy.training import TrainConfig

    kwargs: dict[str, Any] = {}
    for name, flag in command.flags().items():
        value = params[name]
        if flag.parse is not None:
            value = flag.parse(value)
        if flag.invert:
            value = not value
        kwargs[flag.keyword] = value
    return TrainConfig(**kwargs)


def _train(**params: Any) -> None:
    """Train a model for a noisy CIM device (NFT: OVF, IRS, or a baseline) and write a checkpoint.

    Runs unchanged under torchrun --nproc_per_node N (DistributedDataParallel; rank 0 prints and writes).
    """
    from nft_deploy.training import train as train_fn

    config = config_from_params(click.get_current_context().command, params)
    quiet = not config.progress
    result = train_fn(config, on_epoch=None if quiet else lambda m: click.echo(m.line()))
    if result.rank != 0:
        return
    mt = result.metrics
    summary = f"clean {100 * mt['clean_acc']:.2f}%  noisy {100 * mt['noisy_acc']:.2f}%"
    if "mc_mean" in mt:
        summary += f"  Monte Carlo {100 * mt['mc_mean']:.2f}% +/- {100 * mt['mc_std']:.2f} ({int(mt['mc_chips'])} chips)"
    click.echo(f"{result.method['name']}: {summary}")
    click.echo(f"wrote {result.checkpoint} and {result.log}")


train = click.command("train", cls=_TrainCommand)(_train)

__all__ = ["config_from_params", "train"]
