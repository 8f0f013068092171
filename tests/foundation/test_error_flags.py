"""Every ``--flag`` that a message or help text of the library names is a flag of some nft-deploy command
(or of another tool, listed below with the reason): a user told to pass ``--x`` can pass it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click

from nft_deploy.cli import main

ROOT = Path(__file__).resolve().parents[2]
OTHER_TOOLS = {
    "--help": "click's own",
    "--head": "ray start --head",
    "--no-deps": "pip install --no-deps",
    "--nproc": "torchrun --nproc_per_node (the pattern stops at the underscore)",
    "--check": "python -m nft_deploy.profile_schema --check",
    "--flag": "a placeholder in check.py's docstring: PASSED | subject | value >= threshold (--flag)",
}


def cli_flags() -> set[str]:
    ctx = click.Context(main)
    flags: set[str] = set()

    def walk(cmd: click.Command) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name))
        for param in cmd.params:
            flags.update(param.opts + param.secondary_opts)

    walk(main)
    return flags


def named_flags() -> dict[str, set[str]]:
    """Flag -> the files whose string literals name it."""
    named: dict[str, set[str]] = {}
    for path in [*(ROOT / "nft_deploy").rglob("*.py"), *(ROOT / "converters").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", node.value):
                    named.setdefault(flag, set()).add(str(path.relative_to(ROOT)))
    return named


def test_every_flag_a_message_names_exists():
    named = named_flags()
    assert "--chips" in named and "--workers" in named  # the scan sees the messages
    missing = {flag: sorted(files) for flag, files in named.items() if flag not in cli_flags() | set(OTHER_TOOLS)}
    assert not missing, f"messages name flags no command has: {missing}"
