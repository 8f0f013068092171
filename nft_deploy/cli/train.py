"""``nft-deploy train``: a thin click layer over ``nft_deploy.training.train``.

The flags are generated from the option dataclasses (``nft_deploy.training.config.option``): one per
``TrainConfig`` field (the general options) and one per flagged option of every registered method, with
the declared default and help; ``--help`` lists the methods' options in one section per method. A method
registered later (a plug-in) gets its flags the next time the command is parsed. Comma-separated values of
tuple options are split here, so a bad list is one ``Error:`` line (exit 1), not a usage error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from nft_deploy.cli.notes import notes
from nft_deploy.cli.options import GENERAL, Flag, make_option


def _generate() -> tuple[list[click.Parameter], dict[str, Flag]]:
    """The click options of every TrainConfig field and registered method option (flat names once)."""
    from nft_deploy.training.config import TrainFields, flag_of, flat_name, registered_methods

    params: list[click.Parameter] = []
    flags: dict[str, Flag] = {}
    specs = registered_methods()
    for f in dataclasses.fields(TrainFields):
        made = make_option(TrainFields, f, f.name, GENERAL)
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
            made = make_option(spec.config, f, keyword, f"Options of --method {spec.name}")
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

    _generated: tuple[int, list[click.Parameter], dict[str, Flag]] | None = None

    def _current(self) -> tuple[list[click.Parameter], dict[str, Flag]]:
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

    def flags(self) -> dict[str, Flag]:
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
    with notes():
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
