"""The wheel built from the repo carries converters and every profile, and its CLI works in a fresh venv.

Offline and cheap: the fresh venv gets only the wheel (--no-deps) plus links to the two packages
`profiles list` needs (click, numpy) taken from the running environment; torch is deliberately absent.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "nft_deploy", "converters", "device_profiles")


def _copy_sources(dst: Path) -> None:
    """A clean copy of what the build reads, so the build leaves no build/ or egg-info in the checkout."""
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dst / name)


def _package_dir(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec.submodule_search_locations:
        roots = [Path(p) for p in spec.submodule_search_locations]
    else:
        roots = [Path(spec.origin)]
    libs = roots[0].parent / f"{name}.libs"  # manylinux wheels keep shared libraries next to the package
    return roots + ([libs] if libs.is_dir() else [])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if importlib.util.find_spec("setuptools") is None:  # --no-build-isolation builds with what is installed
        pytest.fail("setuptools is not installed: add setuptools>=68 to the dev extra in pyproject.toml")
    src = tmp_path_factory.mktemp("src")
    out = tmp_path_factory.mktemp("dist")
    _copy_sources(src)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(out), str(src)], check=True, timeout=180, capture_output=True)
    (whl,) = out.glob("nft_deploy-*.whl")
    return whl


def test_wheel_carries_every_module_converters_and_every_profile(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"nft_deploy/device_profiles/{p.name}" for p in (REPO / "device_profiles").glob("*.json")}
    assert "nft_deploy/device_profiles/schema.json" in expected and len(expected) >= 7
    expected |= {"nft_deploy/converters/__init__.py", "nft_deploy/converters/handlers/__init__.py"}
    for root, prefix in ((REPO / "nft_deploy", "nft_deploy"), (REPO / "converters", "nft_deploy/converters")):
        for py in root.rglob("*.py"):
            if "__pycache__" not in py.parts:
                expected.add(f"{prefix}/{py.relative_to(root).as_posix()}")
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (add the package to [tool.setuptools] in pyproject.toml): {missing}"


def test_wheel_installed_in_a_fresh_venv_lists_every_builtin_profile_from_another_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, timeout=180, capture_output=True)
    deps = tmp_path / "deps"  # only click and numpy, never the repo's own nft_deploy
    deps.mkdir()
    for name in ("click", "numpy"):
        for path in _package_dir(name):
            (deps / path.name).symlink_to(path)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "nft_test_deps.pth").write_text(f"{deps}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = subprocess.run([str(py), "-c", "import nft_deploy; print(nft_deploy.__file__)"], cwd=elsewhere, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(venv), f"imported {where}, not the installed wheel"
    p = subprocess.run([str(venv / "bin" / "nft-deploy"), "profiles", "list"], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    listed = [line.split()[0] for line in p.stdout.splitlines()]
    shipped = sorted(f.stem for f in (REPO / "device_profiles").glob("*.json") if f.name != "schema.json")
    assert listed == shipped
    p = subprocess.run([str(venv / "bin" / "nft-deploy"), "profiles", "show", "nft_reference", "--summary"],
                       cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "0.233" in p.stderr, p.stderr
