"""The evaluate/compare/check/sweep commands: outputs, exit codes, and one-line errors for bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from nft_deploy.cli import main


@pytest.fixture
def files(tmp_path, helpers):
    x, y = helpers.data()
    np.savez(tmp_path / "data.npz", x=x, y=y, x_test=x, y_test=y)
    onnx.save(helpers.deploy(helpers.conv(), "nft_reference"), tmp_path / "a.cim.onnx")
    onnx.save(helpers.deploy(helpers.conv(seed=4), "nft_reference"), tmp_path / "b.cim.onnx")
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_evaluate_writes_json_markdown_and_plots(files):
    out = files / "out"
    r = run("evaluate", files / "a.cim.onnx", "--data", files / "data.npz", "--chips", 5, "--json", out / "r.json",
            "--markdown", out / "r.md", "--plots", out / "plots", "--quiet")
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "r.json").read_text())
    assert doc["schema"] == "nft-deploy/evaluation" and doc["chips"] == 5 and len(doc["per_chip"]) == 5
    assert "| clean accuracy % |" in (out / "r.md").read_text()
    assert {p.name for p in (out / "plots").iterdir()} == {"accuracy_hist.png", "reliability.png"}
    assert (out / "plots" / "accuracy_hist.png").read_bytes()[:4] == b"\x89PNG"
    assert "accuracy % (mean over 5 chips)" in r.output


def test_evaluate_sweep_plots_accuracy_against_sigma(files):
    r = run("evaluate", files / "a.cim.onnx", "--data", files / "data.npz", "--chips", 3, "--sweep", "0:0.2:0.1",
            "--json", files / "s.json", "--plots", files / "p")
    assert r.exit_code == 0, r.output
    doc = json.loads((files / "s.json").read_text())
    assert doc["sigmas"] == [0.0, 0.1, 0.2] and len(doc["results"][0]) == 3
    assert (files / "p" / "accuracy_vs_sigma.png").is_file()


def test_compare_and_sweep_commands_tabulate_every_model(files):
    r = run("compare", files / "a.cim.onnx", files / "b.cim.onnx", files / "a.cim.onnx", "--data",
            files / "data.npz", "--chips", 4, "--json", files / "c.json")
    assert r.exit_code == 0, r.output
    doc = json.loads((files / "c.json").read_text())
    assert len(doc["results"]) == 3 and len(doc["deltas"]) == 2
    assert doc["deltas"][1]["accuracy"]["mean"] == 0.0  # a against itself, same chips
    r = run("sweep", files / "a.cim.onnx", files / "b.cim.onnx", "--data", files / "data.npz", "--chips", 2,
            "--sigmas", "0.1,0.3", "--markdown", files / "s.md")
    assert r.exit_code == 0, r.output
    rows = [ln.split("|")[1:3] for ln in (files / "s.md").read_text().splitlines() if ln.startswith("| ")][1:]
    assert sorted((Path(m.strip()).name, s.strip()) for m, s in rows) == [  # one row per model and sigma, both models
        ("a.cim.onnx", "0.1"), ("a.cim.onnx", "0.3"), ("b.cim.onnx", "0.1"), ("b.cim.onnx", "0.3")]


def test_check_exits_0_above_and_1_below_threshold_with_valid_junit(files):
    args = ["check", files / "a.cim.onnx", "--data", files / "data.npz", "--chips", 5]
    ok = run(*args, "--min-accuracy", 0.0, "--junit", files / "ok.xml")
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("CHIPS  | 5 of at most 5 | settled: mean accuracy >= 0 at alpha 0.05 after 5 chips")
    assert ok.output.splitlines()[1].startswith("PASSED | accuracy (mean over 5 chips) |")
    bad = run(*args, "--min-accuracy", 0.99, "--percentile", 5, "--max-drop", 1.0, "--junit", files / "bad.xml")
    assert bad.exit_code == 1
    lines = bad.output.splitlines()[1:]
    assert lines[0].startswith("FAILED | accuracy (5th percentile of 5 chips) |") and "< 0.9900 (--min-accuracy)" in lines[0]
    assert lines[1].startswith("Note: ") and "lower --min-accuracy" in lines[1]
    assert lines[2].startswith("PASSED | accuracy drop")
    suite = ET.parse(files / "bad.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "2" and suite.get("failures") == "1"
    assert ET.parse(files / "ok.xml").getroot().get("failures") == "0"


@pytest.mark.parametrize("case", ["shape", "labels", "chips0", "not_onnx", "sigma_no_chips", "no_threshold",
                                  "not_deployed", "missing_file", "sigma_and_sweep"])
def test_bad_input_gives_one_line_and_exit_1(files, helpers, case):
    data, model = files / "data.npz", files / "a.cim.onnx"
    x, y = helpers.data()
    if case == "shape":
        np.savez(files / "wide.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.zeros(4, np.int64),
                 x_test=np.zeros((4, 1, 8, 8), np.float32), y_test=np.zeros(4, np.int64))
        args, want = ["evaluate", model, "--data", files / "wide.npz"], "samples have shape (1, 8, 8)"
    elif case == "labels":
        np.savez(files / "lab.npz", x=x, y=y + 5, x_test=x, y_test=y + 5)
        args, want = ["evaluate", model, "--data", files / "lab.npz"], "out of range"
    elif case == "chips0":
        args, want = ["evaluate", model, "--data", data, "--chips", 0], "--chips: must be an integer >= 1"
    elif case == "not_onnx":
        args, want = ["evaluate", data, "--data", data], "not an ONNX model"
    elif case == "sigma_no_chips":
        onnx.save(helpers.deploy(helpers.conv(), "ideal"), files / "ideal.onnx")
        args, want = ["evaluate", files / "ideal.onnx", "--data", data, "--sigma", 0.2], "--sigma: the model has no chip inputs"
    elif case == "no_threshold":
        args, want = ["check", model, "--data", data], "no threshold given"
    elif case == "not_deployed":
        onnx.save(helpers.conv(), files / "float.onnx")
        args, want = ["evaluate", files / "float.onnx", "--data", data], "pass --profile"
    elif case == "sigma_and_sweep":
        args, want = ["evaluate", model, "--data", data, "--sigma", 0.1, "--sweep", "0:0.2:0.1"], "give one of them"
    else:
        args, want = ["evaluate", files / "nope.onnx", "--data", data], "no such model file"
    r = run(*args, "--json", files / "never.json")
    assert r.exit_code == 1, r.output
    assert r.output.count("\n") == 1 and r.output.startswith("Error: ") and want in r.output, r.output
    assert "Traceback" not in r.output
    assert not (files / "never.json").exists()
