"""The sample CI workflow only uses commands and flags that exist, so it cannot rot silently."""

from __future__ import annotations

import re
from pathlib import Path

import click

from nft_deploy.cli import main

WORKFLOW = Path(__file__).parents[2] / "examples" / "04_compare_and_gate" / "nft-robustness.yml"


def _steps() -> list[str]:
    return WORKFLOW.read_text().split("- name:")[1:]


def test_workflow_commands_use_only_existing_flags():
    ctx = click.Context(main)
    seen = set()
    for step in _steps():
        m = re.search(r"nft-deploy (\w+)", step)
        if not m:
            continue
        cmd = main.get_command(ctx, m.group(1))
        assert cmd is not None, f"unknown command {m.group(1)}"
        allowed = {o for p in cmd.params for o in p.opts}
        run = step.split("run:", 1)[1].split("\n      - ", 1)[0]
        flags = set(re.findall(r"(?<=\s)(--?[a-z][\w-]*)", run.split("nft-deploy", 1)[1]))
        assert flags <= allowed, f"{m.group(1)}: unknown flags {sorted(flags - allowed)}"
        seen.add(m.group(1))
    assert {"check", "compare"} <= seen


def test_workflow_gates_with_a_junit_report():
    text = WORKFLOW.read_text()
    assert "--junit reports/nft-check.xml" in text and "report_paths: reports/nft-check.xml" in text
