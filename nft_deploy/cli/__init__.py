"""The ``nft-deploy`` command line: thin click commands over the library API.

Commands load lazily so that ``nft-deploy profiles list`` does not pay for importing torch. Any
``NftDeployError`` becomes one ``Error: ...`` line and exit code 1; other exceptions are bugs and keep
their traceback.

Outputs: every command writes through ``nft_deploy.atomic`` (temporary file, fsync, ``os.replace``), and
the output options below are checked before the command runs (``check_writable``), so a path that cannot
be written fails in a second with one line naming the option, not after training or a Monte Carlo run.

Interruptions: Ctrl-C (SIGINT) exits 130 and SIGTERM 143, each with one ``Interrupted (...)`` line that
says which complete files were written (an interrupted write leaves nothing). Worker processes this
process forks ignore SIGINT (the terminal sends it to the whole group) and die quietly when the parent,
interrupted, terminates them, so no worker prints a traceback and no pool waits for its queue.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path

import click

from nft_deploy import __version__
from nft_deploy.errors import NftDeployError, OutputError, Terminated

# command name -> "module:attribute"
COMMANDS = {
    "profiles": "nft_deploy.cli.profiles:profiles",
    "train": "nft_deploy.cli.train:train",
    "export": "nft_deploy.cli.export:export",
    "plan": "nft_deploy.cli.plan:plan",
    "evaluate": "nft_deploy.cli.evaluate:evaluate",
    "compare": "nft_deploy.cli.evaluate:compare",
    "check": "nft_deploy.cli.evaluate:check",
    "sweep": "nft_deploy.cli.evaluate:sweep",
    "demo": "nft_deploy.cli.demo:demo",
}


OUTPUT_PARAMS = {"output": "file", "log_file": "file", "json_path": "file", "md_path": "file",
                 "junit_path": "file", "plots_dir": "folder", "out": "folder", "resume": "folder"}
"""Parameter name -> what it names, for the options that say where a command writes. They are checked
before the command runs; click's own file/folder checks on them are replaced by that one-line check."""

EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class _UserErrorCommand(click.Command):
    """Turns NftDeployError into a one-line click error (exit 1); checks output paths before running."""

    def invoke(self, ctx):
        try:
            _check_outputs(ctx)
            return super().invoke(ctx)
        except NftDeployError as e:
            raise click.ClickException(_with_option(ctx, e)) from None


def _check_outputs(ctx) -> None:
    from nft_deploy.atomic import check_writable

    for name, kind in OUTPUT_PARAMS.items():
        value = ctx.params.get(name)
        if value is not None and name in {p.name for p in ctx.command.params}:
            check_writable(value, folder=kind == "folder")


def _with_option(ctx, e: NftDeployError) -> str:
    """``--json out/r.json: ...`` when an OutputError's path is (or is inside) an output option's value."""
    if not isinstance(e, OutputError):
        return str(e)
    path = Path(e.path)
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if p.name in OUTPUT_PARAMS and value is not None and (path == Path(value) or Path(value) in path.parents):
            longest = max(p.opts, key=len) if isinstance(p, click.Option) else p.human_readable_name
            return f"{longest} {e}"
    return str(e)


class _OutputPath(click.ParamType):
    """An output option's click.Path without click's exists/folder checks (``check_writable`` does them)."""

    def __init__(self, inner: click.Path):
        self.inner = inner
        self.name = inner.name

    def get_metavar(self, *args, **kwargs):
        return self.inner.get_metavar(*args, **kwargs)

    def convert(self, value, param, ctx):
        return self.inner.coerce_path_result(value) if value is not None else None


class LazyGroup(click.Group):
    """A group whose commands are imported on first use; interruptions end in one line (130 / 143)."""

    def invoke(self, ctx):
        from nft_deploy import atomic

        with _Interrupts() as interrupts, atomic.recording() as written:
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt:
                interrupts.ending()
                click.echo(_interrupted("SIGINT", written), err=True)
                ctx.exit(EXIT_SIGINT)
            except Terminated:
                interrupts.ending()
                click.echo(_interrupted("SIGTERM", written), err=True)
                ctx.exit(EXIT_SIGTERM)

    def list_commands(self, ctx):
        return [n for n, target in COMMANDS.items() if importlib.util.find_spec(target.split(":")[0])]

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None or not importlib.util.find_spec(target.split(":")[0]):
            return None
        module, attr = target.split(":")
        cmd = getattr(importlib.import_module(module), attr)
        _wrap_errors(cmd)
        return cmd


def _wrap_errors(cmd: click.Command) -> None:
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _wrap_errors(sub)
    elif not isinstance(cmd, _UserErrorCommand):
        cmd.__class__ = type("UserError" + type(cmd).__name__, (_UserErrorCommand, type(cmd)), {})
        for p in cmd.params:
            if p.name in OUTPUT_PARAMS and isinstance(p.type, click.Path):
                p.type = _OutputPath(p.type)


class _Interrupts:
    """While a command runs: SIGINT -> KeyboardInterrupt, SIGTERM -> Terminated, each after terminating the
    worker processes; forked children ignore SIGINT and take SIGTERM's default. Restores the handlers."""

    def __enter__(self):
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig, handler in ((signal.SIGINT, _on_sigint), (signal.SIGTERM, _on_sigterm)):
                self.saved[sig] = signal.signal(sig, handler)
        self.token = _COMMAND_RUNNING.set(True)
        return self

    def ending(self) -> None:
        """The command was interrupted and the process is exiting: a second Ctrl-C or SIGTERM (a process
        group signalled twice, an impatient user) must not turn the exit code into a death by signal."""
        for sig in self.saved:
            signal.signal(sig, signal.SIG_IGN)
        self.saved = {}

    def __exit__(self, *exc):
        _COMMAND_RUNNING.reset(self.token)
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False


_COMMAND_RUNNING: contextvars.ContextVar[bool] = contextvars.ContextVar("nft_deploy_command_running", default=False)
"""True in the context of a running command; a process forked from it inherits the value (``_child_signals``)."""


def _child_signals() -> None:
    """In a process forked during a command (a local evaluation worker): Ctrl-C is the parent's to
    handle; SIGTERM (the parent stopping it) ends it quietly instead of raising in it."""
    if _COMMAND_RUNNING.get():
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _COMMAND_RUNNING.set(False)


if hasattr(os, "register_at_fork"):  # once, at import; a no-op in a process forked outside a command
    os.register_at_fork(after_in_child=_child_signals)


def _stop_children() -> None:
    for child in multiprocessing.active_children():
        with contextlib.suppress(Exception):
            child.terminate()


def _on_sigint(signum, frame):
    _stop_children()
    raise KeyboardInterrupt


def _on_sigterm(signum, frame):
    _stop_children()
    raise Terminated(signum)


def _interrupted(name: str, written: list[Path]) -> str:
    kept = list(dict.fromkeys(str(p) for p in written))
    if not kept:
        return f"Interrupted ({name}): nothing written"
    shown = ", ".join(kept[:3]) + (f" and {len(kept) - 3} more" if len(kept) > 3 else "")
    return f"Interrupted ({name}): kept {shown} (complete); nothing partial written"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nft-deploy")
def main():
    """nft-deploy: train with Negative Feedback Training, export to CIM-deployed ONNX, evaluate on
    Monte Carlo chips, and gate robustness in CI."""


def run() -> None:
    """The ``nft-deploy`` program: ``main``, where a Ctrl-C that lands after the first one was turned into
    exit 130 (while the interpreter unwinds) still exits 130 instead of dying by the signal."""
    try:
        main(prog_name="nft-deploy")
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)


__all__ = ["main", "run"]
