"""The ``nft-deploy`` command line: thin click commands over the library API.

Commands load lazily so that ``nft-deploy profiles list`` does not pay for importing torch. Any
``NftDeployError`` becomes one ``Error: ...`` line and exit code 1; other exceptions are bugs and keep
their traceback.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from nft_deploy import __version__
from nft_deploy.errors import NftDeployError

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


class _UserErrorCommand(click.Command):
    """Turns NftDeployError into a one-line click error (exit 1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NftDeployError as e:
            raise click.ClickException(str(e)) from None


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nft-deploy")
def main():
    """nft-deploy: train with Negative Feedback Training, export to CIM-deployed ONNX, evaluate on
    Monte Carlo chips, and gate robustness in CI."""


__all__ = ["main"]
