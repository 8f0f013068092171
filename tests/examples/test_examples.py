"""Every example README's commands run, in order, scaled down by NFT_EXAMPLE_QUICK=1: examples cannot rot.

Each examples/NN_name/README.md has ```bash blocks; their commands run from the root of a workspace holding
a copy of the repository's examples/ and device_profiles/ (so the examples write nothing into the
checkout). Later examples reuse what earlier ones wrote under runs/: ``NEEDS`` names those, and a test runs
the examples its example needs first (once per workspace), so every test also passes alone
(``pytest tests/examples -k 04_compare``). ``REQUIRES`` names the optional libraries an example imports; without
one, its test skips saying which.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (REPO / "examples").glob("[0-9][0-9]_*") if p.is_dir())
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
NEEDS = {"02": ("01",), "03": ("02",), "04": ("02",), "05": ("01",)}
"""The examples whose runs/ outputs an example reads (01: checkpoints, 02: exported models)."""
REQUIRES = {"08": ("torchvision",)}
"""Libraries an example needs that nft-deploy does not depend on (08: the user's torchvision model)."""


def readme_commands(folder: Path) -> list[str]:
    """The shell commands of an example's README, in order (comments and blank lines dropped)."""
    text = (folder / "README.md").read_text()
    lines = [ln.strip() for block in BLOCK.findall(text) for ln in block.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def test_there_are_eight_numbered_examples_each_with_commands():
    assert [p.name[:2] for p in EXAMPLES] == ["01", "02", "03", "04", "05", "06", "07", "08"]
    for folder in EXAMPLES:
        assert readme_commands(folder), f"{folder.name}/README.md has no ```bash commands"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples-run")
    shutil.copytree(REPO / "examples", root / "examples")
    shutil.copytree(REPO / "device_profiles", root / "device_profiles")  # examples name profiles by path too
    return root


@pytest.fixture(scope="module")
def run_example(workspace):
    """``run_example(folder)``: runs the example's commands in the workspace after those of the examples it
    needs, each example at most once; returns the first failure's message, or None."""
    env = dict(os.environ, NFT_EXAMPLE_QUICK="1", MPLBACKEND="Agg",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    outcome: dict[str, str | None] = {}

    def run(folder: Path) -> str | None:
        number = folder.name[:2]
        if number not in outcome:
            for need in NEEDS.get(number, ()):
                failed = run(next(p for p in EXAMPLES if p.name.startswith(need)))
                if failed:
                    outcome[number] = f"{folder.name} needs {need}, which failed: {failed}"
                    return outcome[number]
            outcome[number] = None
            for cmd in readme_commands(folder):
                done = subprocess.run(cmd, shell=True, cwd=workspace, env=env, capture_output=True, text=True,
                                      timeout=600, executable="/bin/bash")
                if done.returncode != 0:
                    outcome[number] = (f"{folder.name}: `{cmd}` exited {done.returncode}\n{done.stdout[-3000:]}\n"
                                       f"{done.stderr[-3000:]}")
                    break
        return outcome[number]

    return run


def test_every_needed_example_exists_and_comes_earlier():
    numbers = [p.name[:2] for p in EXAMPLES]
    for number, needs in NEEDS.items():
        assert number in numbers and all(n in numbers and n < number for n in needs), (number, needs)


@pytest.mark.slow
@pytest.mark.parametrize("folder", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_readme_commands_run(folder, run_example):
    missing = [lib for lib in REQUIRES.get(folder.name[:2], ()) if importlib.util.find_spec(lib) is None]
    if missing:
        pytest.skip(f"{folder.name} needs {', '.join(missing)} (not a dependency of nft-deploy; pip install it)")
    failed = run_example(folder)
    assert failed is None, failed
