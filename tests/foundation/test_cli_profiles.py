"""`nft-deploy profiles list/show/validate` and `--version`: thin, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nft_deploy import __version__
from nft_deploy.cli import main
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import list_profiles, load_profile

BAD = {"schema_version": 1, "name": "bad", "programming": {"sigma": 0.1, "unit": "volts"}}


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version_prints_the_package_version():
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"nft-deploy, version {__version__}"


def test_profiles_list_names_every_builtin_with_its_closed_form_std():
    r = run("profiles", "list")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == list_profiles()
    ref = next(ln for ln in lines if ln.startswith("nft_reference"))
    assert f"std(W)/max|W|={NoiseModel(load_profile('nft_reference')).weight_std:.4f}" in ref


@pytest.mark.parametrize("name", list_profiles())
def test_profiles_show_prints_the_profile_json_and_its_noise(name):
    r = run("profiles", "show", name)
    assert r.exit_code == 0
    body, comment = r.stdout.rsplit("\n#", 1)
    assert json.loads(body) == load_profile(name).to_dict()
    assert f"{NoiseModel(load_profile(name)).weight_std:.6f} x max|W|" in comment


def test_profiles_show_accepts_a_path_and_rejects_unknown_names_in_one_line(tmp_path):
    f = tmp_path / "mine.json"
    f.write_text(load_profile("rram_4bit").to_json())
    assert json.loads(run("profiles", "show", str(f)).stdout.rsplit("\n#", 1)[0])["name"] == "rram_4bit"
    r = run("profiles", "show", "nope")
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "nope: unknown profile; built-in profiles:" in r.stderr


def test_profiles_validate_reports_ok_and_one_line_per_bad_file_and_exits_1(tmp_path, monkeypatch):
    good = tmp_path / "good.json"
    good.write_text(load_profile("pcm_8bit").to_json())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(BAD))
    assert run("profiles", "validate", str(good)).exit_code == 0
    r = run("profiles", "validate", str(good), str(bad))
    assert r.exit_code == 1
    assert r.stdout.splitlines() == [f"OK      | {good} (pcm_8bit)"]
    assert r.stderr.splitlines() == [f"INVALID | {bad}: programming.unit: must be one of 'cell_range', 'level'; "
                                     "got 'volts'"]
    monkeypatch.chdir(tmp_path)  # a bare file name is a path, not a built-in name
    plain = tmp_path / "ideal"
    plain.write_text(json.dumps(BAD))
    r = run("profiles", "validate", "ideal")
    assert r.exit_code == 1 and "programming.unit" in r.stderr


def test_profiles_validate_accepts_every_shipped_file():
    files = sorted(str(p) for p in (Path(__file__).resolve().parents[2] / "device_profiles").glob("*.json")
                   if p.name != "schema.json")
    r = run("profiles", "validate", *files)
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == len(files)


def test_real_process_prints_one_error_line_without_traceback_and_exits_1(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**BAD, "programming": {"sigma": -1}}))
    script = Path(sys.executable).with_name("nft-deploy")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from nft_deploy.cli import main; main()"]
    p = subprocess.run([*cmd, "profiles", "validate", str(bad)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=60)
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr.splitlines() == [f"INVALID | {bad}: programming.sigma: must be >= 0.0, got -1.0"]
    p = subprocess.run([*cmd, "profiles", "show", "missing_profile"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr and len(p.stderr.splitlines()) == 1
    assert p.stderr.startswith("Error: missing_profile: unknown profile")


def test_state_dependent_profiles_show_their_factor_and_in_band_std():
    nm = NoiseModel(load_profile("rram_state_dependent"))
    line = next(ln for ln in run("profiles", "list").stdout.splitlines() if ln.startswith("rram_state_dependent"))
    assert "s=4" in line
    comment = run("profiles", "show", "rram_state_dependent").stdout.splitlines()[-1]
    assert f"({4 * nm.weight_std:.6f} for 0.25 < |w|/max|W| < 0.75)" in comment
