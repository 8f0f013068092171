"""``nft-deploy export``: the report, default output names, flags, and one-line errors that leave no file."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnx.parser
import pytest
import torch
from click.testing import CliRunner

from nft_deploy.checkpoint import save_checkpoint
from nft_deploy.chips import META_PROFILE, META_SOURCE_SHA256
from nft_deploy.cli import main
from nft_deploy.models import build_model


def _invoke(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "lenet.pt"
    torch.manual_seed(0)
    save_checkpoint(path, model=build_model("lenet5", width=0.5), arch={"name": "lenet5", "kwargs": {"width": 0.5}},
                    profile=None, method={"name": "plain"}, input_shape=(1, 28, 28))
    return path


def test_checkpoint_export_prints_report_and_writes_default_output(ckpt, helpers):
    res = _invoke(ckpt, "--profile", "rram_4bit")
    assert res.exit_code == 0, res.output
    out = ckpt.with_name("lenet.cim.onnx")
    assert "Inserted | 2 Conv, 3 Gemm" in res.output and "Passed   |" in res.output
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[META_SOURCE_SHA256] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    x = np.zeros((4, 1, 28, 28), np.float32)
    (y,) = helpers.ort_run(model, helpers.zero_feeds(model, x))
    assert y.shape == (4, 10)


def test_no_device_writes_the_float_baseline(ckpt, tmp_path):
    out = tmp_path / "clean.onnx"
    res = _invoke(ckpt, "--no-device", "-o", out, "--quiet")
    assert res.exit_code == 0 and res.output == ""
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["x"] and not model.metadata_props


def test_state_dict_with_model_flags_and_sigma_override(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "weights.pt"
    torch.save(build_model("lenet5", width=0.5).state_dict(), path)
    out = tmp_path / "w.onnx"
    res = _invoke(path, "--profile", "nft_reference", "--model", "lenet5", "--width", 0.5, "--sigma", 0.2, "-o", out)
    assert res.exit_code == 0, res.output
    prof = json.loads(next(p.value for p in onnx.load(str(out)).metadata_props if p.key == META_PROFILE))
    assert prof["programming"]["sigma"] == 0.2


def test_pickled_module_loads_only_with_trust_checkpoint(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3)), path)
    refused = _invoke(path, "--profile", "ideal")
    assert refused.exit_code == 1 and "--trust-checkpoint" in refused.output
    ok = _invoke(path, "--profile", "ideal", "--trust-checkpoint", "--input-shape", "4")
    assert ok.exit_code == 0, ok.output
    assert "Warning:" in ok.output and "Mapped   | 1 Gemm" in ok.output


def _bad_inputs(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    listy = tmp_path / "list.pt"
    torch.save([1, 2, 3], listy)
    bad_profile = tmp_path / "bad.json"
    bad_profile.write_text(json.dumps({"schema_version": 1, "name": "x", "programming": {"sigma": -1}}))
    relu = tmp_path / "relu.onnx"
    onnx.save(onnx.parser.parse_model('<ir_version: 9, opset_import: ["" : 18]>\n'
                                      "g (float[N,4] x) => (float[N,4] y) { y = Relu(x) }"), str(relu))
    dyn = tmp_path / "dynamic.onnx"
    onnx.save(onnx.parser.parse_model('<ir_version: 9, opset_import: ["" : 18]>\n'
                                      "g (float[N,2,5,5] x, float[3,2,3,3] w) => (float[N,3,3,3] y) { y = Conv(x, w) }"),
              str(dyn))
    return {
        "missing file": ([tmp_path / "nope.pt", "--profile", "ideal"], "nope.pt: no such file"),
        "not a checkpoint": ([garbage, "--profile", "ideal"], "garbage.pt: not a checkpoint"),
        "not a checkpoint (list)": ([listy, "--profile", "ideal"], "list.pt: not a checkpoint"),
        "invalid profile": ([relu, "--profile", bad_profile], "programming.sigma: must be >= 0"),
        "unknown profile": ([relu, "--profile", "nope"], "nope: unknown profile"),
        "no mappable layer": ([relu, "--profile", "rram_4bit"], "no mappable layer"),
        "op the pass cannot handle": ([dyn, "--profile", "rram_4bit"], "(Conv): weight not constant"),
        "missing --profile": ([relu], "--profile: required"),
    }


CASES = ["missing file", "not a checkpoint", "not a checkpoint (list)", "invalid profile", "unknown profile",
         "no mappable layer", "op the pass cannot handle", "missing --profile"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_exit_1_and_no_output_file(tmp_path, case):
    args, expected = _bad_inputs(tmp_path)[case]
    before = set(tmp_path.iterdir())
    res = _invoke(*args, "-o", tmp_path / "out.cim.onnx")
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], res.output
    assert set(tmp_path.iterdir()) == before  # nothing written, no temp file left


def test_failed_pass_leaves_no_default_output_either(tmp_path):
    dyn = tmp_path / "dynamic.onnx"
    onnx.save(onnx.parser.parse_model('<ir_version: 9, opset_import: ["" : 18]>\n'
                                      "g (float[N,2,5,5] x, float[3,2,3,3] w) => (float[N,3,3,3] y) { y = Conv(x, w) }"),
              str(dyn))
    assert _invoke(dyn, "--profile", "rram_4bit").exit_code == 1
    assert [p.name for p in tmp_path.iterdir()] == ["dynamic.onnx"]
