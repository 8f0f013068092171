"""`nft-deploy profiles list/show/init/validate` and `--version`: thin, one-line errors, exit codes."""

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
def test_profiles_show_prints_pure_json_and_the_noise_summary_only_on_stderr_with_summary(name):
    r = run("profiles", "show", name)
    assert r.exit_code == 0 and r.stderr == ""
    assert json.loads(r.stdout) == load_profile(name).to_dict()
    r = run("profiles", "show", name, "--summary")
    assert r.exit_code == 0 and json.loads(r.stdout) == load_profile(name).to_dict()
    assert r.stderr.count("\n") == 1
    assert f"{NoiseModel(load_profile(name)).weight_std:.6f} x max|W|" in r.stderr


def test_profiles_show_redirected_to_a_file_gives_a_profile_that_validates(tmp_path):
    mine = tmp_path / "my.json"
    mine.write_text(run("profiles", "show", "rram_4bit", "--summary").stdout)
    r = run("profiles", "validate", str(mine))
    assert r.exit_code == 0 and r.stdout.splitlines() == [f"OK      | {mine} (rram_4bit)"]
    assert load_profile(mine) == load_profile("rram_4bit")


def test_profiles_show_accepts_a_path_and_rejects_unknown_names_in_one_line(tmp_path):
    f = tmp_path / "mine.json"
    f.write_text(load_profile("rram_4bit").to_json())
    assert json.loads(run("profiles", "show", str(f)).stdout)["name"] == "rram_4bit"
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
    summary = run("profiles", "show", "rram_state_dependent", "--summary").stderr
    assert f"({4 * nm.weight_std:.6f} for 0.25 < |w|/max|W| < 0.75)" in summary


def test_profiles_init_writes_every_builtin_and_the_schema_as_files_that_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("profiles", "init", "profiles")
    assert r.exit_code == 0, r.output
    names = [*list_profiles(), "schema"]
    assert r.stdout.splitlines() == [f"wrote {Path('profiles') / f'{n}.json'}" for n in names]
    assert sorted(p.stem for p in (tmp_path / "profiles").iterdir()) == sorted(names)
    for name in list_profiles():
        assert load_profile(f"profiles/{name}.json") == load_profile(name)  # what --profile PATH does
    assert run("profiles", "validate", *sorted(str(p) for p in Path("profiles").glob("*.json"))).exit_code == 0
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((tmp_path / "profiles" / "schema.json").read_text())
    for name in list_profiles():
        copy = json.loads((tmp_path / "profiles" / f"{name}.json").read_text())
        assert copy["$schema"] == "./schema.json", "editors find the schema next to the copy"
        jsonschema.validate(copy, schema)


def test_profiles_init_refuses_to_overwrite_in_one_line_naming_the_file_and_force(tmp_path):
    out = tmp_path / "p"
    assert run("profiles", "init", str(out)).exit_code == 0
    edited = out / "rram_4bit.json"
    edited.write_text("{}")
    r = run("profiles", "init", str(out))
    assert r.exit_code == 1 and r.stdout == "" and r.stderr.count("\n") == 1
    assert f"{out / list_profiles()[0]}.json: already exists" in r.stderr and "--force" in r.stderr
    assert edited.read_text() == "{}", "a refused init writes nothing"
    r = run("profiles", "init", str(out), "--force")
    assert r.exit_code == 0 and load_profile(edited) == load_profile("rram_4bit")


def test_profiles_init_into_a_file_is_a_one_line_error(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    r = run("profiles", "init", str(f))
    assert r.exit_code == 1 and r.stderr == f"Error: {f}: not a directory; give a folder for the profile copies\n"


@pytest.mark.parametrize("what", ["nope/x.json", "nope"])
def test_a_profile_that_is_not_there_lists_the_builtins_and_how_to_copy_one(what):
    r = run("profiles", "show", what)
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert f"built-in profiles: {', '.join(list_profiles())}" in r.stderr
    assert "copy one with `nft-deploy profiles init DIR` or `nft-deploy profiles show NAME > my.json`" in r.stderr
