"""``evaluate --engine torch`` against the ONNX Runtime engine: one checkpoint, the same chips, the same JSON.

The deployed graph and the training-time torch simulation must agree chip by chip; any difference is a bug
in the export or in one of the engines. Profiles without read noise only (the torch engine models none).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from nft_deploy.converters.loaders import load_source

from nft_deploy.checkpoint import save_checkpoint
from nft_deploy.cli import main
from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.results import to_json
from nft_deploy.evaluation.runner import TORCH_EVALUATE_ONLY, EvalConfig, evaluate
from nft_deploy.evaluation.torch_engine import ONNX_REFUSED
from nft_deploy.models import build_model
from nft_deploy.profiles import ReadNoise, load_profile

SAMPLES, CHIPS, SEED = 128, 4, 3
SOFTMAX_FLOATS = {"confidence", "confidence_drop", "entropy", "ekl", "predictive_entropy", "expected_entropy"}
"""JSON keys computed from softmax values alone: the engines' float32 logits differ in the last bits (and, with
8-bit converters, by an ADC step where a sum lands on a rounding boundary)."""


@pytest.fixture(scope="module")
def lenet():
    """LeNet-5 with sharper logits (weights x3, so chips flip predictions), data labelled by the model itself
    with every 7th label shifted (clean accuracy < 1: calibration and flips both have something to show)."""
    torch.manual_seed(0)
    model = build_model("lenet5", width=0.5).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    x = np.random.default_rng(0).random((SAMPLES, 1, 28, 28)).astype(np.float32) - 0.5
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    y[::7] = (y[::7] + 1) % 10
    return model, x, y


@pytest.fixture(scope="module")
def checkpoints(lenet, tmp_path_factory):
    """profile name -> (checkpoint storing that profile without read noise, its deployed graph)."""
    model, _, _ = lenet
    folder, cache = tmp_path_factory.mktemp("ckpt"), {}

    def get(name: str):
        if name not in cache:
            prof = dataclasses.replace(load_profile(name), read_noise=ReadNoise())
            path = _save(model, folder / f"{name}.pt", prof.to_dict())
            cache[name] = path, load_deployed(path)
        return cache[name]

    return get


def _save(model, path, profile):
    return save_checkpoint(path, model=model, arch={"name": "lenet5", "kwargs": {"width": 0.5}}, profile=profile,
                           method={"name": "plain"}, input_shape=(1, 28, 28))


def _both(checkpoints, lenet, profile, **kw):
    _, x, y = lenet
    path, deployed = checkpoints(profile)
    common = dict(chips=CHIPS, seed=SEED, quiet=True, workers=1, **kw)
    return evaluate(deployed, (x, y), engine="onnxruntime", **common), evaluate(path, (x, y), engine="torch", **common)


def _assert_same_json(a, b, key: str = "", logit_tol: float = 1e-4, slack: float = 0.0):
    """a == b leaf by leaf: ints and strings exact, softmax floats within ``logit_tol``, ECE within both,
    other floats (accuracies, flip rates, sigma, bin edges) within ``slack``."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same_json(a[k], b[k], k, logit_tol, slack)
    elif isinstance(a, list):
        assert len(a) == len(b), key
        for u, v in zip(a, b, strict=True):
            _assert_same_json(u, v, key, logit_tol, slack)
    elif isinstance(a, float):
        tol = logit_tol if key in SOFTMAX_FLOATS else logit_tol + slack if key == "ece" else slack
        assert abs(a - b) <= tol + 1e-12, (key, a, b)
    else:
        assert a == b, (key, a, b)


@pytest.mark.parametrize(("profile", "converters"), [("nft_reference", False), ("rram_4bit", False),
                                                     ("pcm_8bit", True)])
def test_torch_engine_matches_onnxruntime_chip_by_chip_and_writes_the_same_json(checkpoints, lenet, profile,
                                                                                  converters):
    ort_run, torch_run = _both(checkpoints, lenet, profile)
    # 8-bit DAC/ADC round float32 sums: an ADC step apart on a few outputs (measured: softmax floats 2e-4,
    # logits 0.08, no flip), so at most 2 flipped predictions per 1000 samples per chip
    flips = math.ceil(2 * SAMPLES / 1000) if converters else 0
    ort_correct = [round(c.accuracy * SAMPLES) for c in ort_run.per_chip]
    torch_correct = [round(c.accuracy * SAMPLES) for c in torch_run.per_chip]
    assert all(abs(a - b) <= flips for a, b in zip(ort_correct, torch_correct, strict=True))
    assert abs(ort_run.clean.accuracy - torch_run.clean.accuracy) * SAMPLES <= flips
    assert ort_run.accuracy.std > 0 and ort_run.clean.accuracy < 1  # chips differ: the agreement means something
    assert (ort_run.strategy, torch_run.strategy) == ("fold", "torch")
    a, b = json.loads(to_json(ort_run)), json.loads(to_json(torch_run))
    a.pop("strategy"), b.pop("strategy")
    if flips:  # a flip can move a bin's accuracy by 1/(bin count): compare the bins' total only
        assert sum(a.pop("reliability")["count"]) == sum(b.pop("reliability")["count"]) == CHIPS * SAMPLES
    # a flip moves an accuracy by 1/n, a flip rate by up to 2/n, a 4-chip CI bound by < 2/n
    _assert_same_json(a, b, logit_tol=1e-3 if converters else 1e-4, slack=2 * flips / SAMPLES)


def test_sigma_rescales_both_engines_alike(checkpoints, lenet):
    ort_run, torch_run = _both(checkpoints, lenet, "nft_reference", sigma=0.2)
    assert ort_run.sigma == torch_run.sigma == 0.2
    assert [c.accuracy for c in ort_run.per_chip] == [c.accuracy for c in torch_run.per_chip]
    default = _both(checkpoints, lenet, "nft_reference")[1]
    assert [c.accuracy for c in default.per_chip] != [c.accuracy for c in torch_run.per_chip]


def test_state_dict_with_its_model_name_runs_on_the_same_chips(checkpoints, lenet, tmp_path):
    model, x, y = lenet
    path, _ = checkpoints("nft_reference")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    src = load_source(tmp_path / "sd.pt", model="lenet5", model_kwargs={"width": 0.5})
    prof = dataclasses.replace(load_profile("nft_reference"), read_noise=ReadNoise())
    a = evaluate(src, (x, y), engine="torch", profile=prof, chips=2, seed=SEED, quiet=True)
    b = evaluate(path, (x, y), engine="torch", chips=2, seed=SEED, quiet=True)
    assert a.per_chip == b.per_chip and a.model == str(tmp_path / "sd.pt")


def test_engine_torch_refuses_onnx_and_checkpoints_without_a_profile(checkpoints, lenet, tmp_path):
    model, x, y = lenet
    _, deployed = checkpoints("nft_reference")
    for onnx_model in (deployed, deployed.proto, tmp_path / "m.onnx"):
        with pytest.raises(EvaluationError, match="^" + re.escape(ONNX_REFUSED)):
            evaluate(onnx_model, (x, y), engine="torch", chips=1)
    bare = _save(model, tmp_path / "bare.pt", None)
    with pytest.raises(EvaluationError, match="bare.pt: the checkpoint stores no device profile; pass --profile"):
        evaluate(bare, (x, y), engine="torch", chips=1)
    with pytest.raises(EvaluationError, match="--engine: must be one of onnxruntime, torch; got 'tf'"):
        EvalConfig(engine="tf")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def npz(lenet, tmp_path):
    _, x, y = lenet
    np.savez(tmp_path / "data.npz", x=x, y=y, x_test=x[:32], y_test=y[:32])
    return tmp_path / "data.npz"


def test_cli_engine_torch_writes_the_evaluation_json(checkpoints, npz, tmp_path):
    path, _ = checkpoints("nft_reference")
    r = run("evaluate", path, "--data", npz, "--engine", "torch", "--chips", 2, "--json", tmp_path / "out.json")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["schema"] == "nft-deploy/evaluation" and doc["strategy"] == "torch"
    assert doc["chips"] == 2 and doc["samples"] == 32 and "Note:" not in r.output


def test_cli_read_noise_profile_gets_a_note_not_an_error(lenet, npz, tmp_path):
    path = _save(lenet[0], tmp_path / "rram.pt", load_profile("rram_4bit").to_dict())
    r = run("evaluate", path, "--data", npz, "--engine", "torch", "--chips", 1, "--quiet")
    assert r.exit_code == 0, r.output
    assert "Note: " in r.stderr and "read noise" in r.stderr and r.stderr.count("\n") == 1


def test_cli_engine_torch_on_onnx_and_on_compare_are_one_line_errors(checkpoints, npz, tmp_path):
    _, deployed = checkpoints("nft_reference")
    onnx.save(deployed.proto, tmp_path / "m.cim.onnx")
    for args, want in ((("evaluate", tmp_path / "m.cim.onnx"), ONNX_REFUSED),
                       (("compare", tmp_path / "m.cim.onnx", tmp_path / "m.cim.onnx"), "--engine torch: only evaluate"),
                       (("evaluate", tmp_path / "m.cim.onnx", "--sweep", "0:0.2:0.1"), "--engine torch: only evaluate")):
        r = run(*args, "--data", npz, "--engine", "torch", "--chips", 1)
        assert r.exit_code == 1 and r.output.count("\n") == 1 and want in r.output, r.output


def test_library_compare_refuses_engine_torch(checkpoints, lenet):
    from nft_deploy.evaluation.compare import compare

    _, deployed = checkpoints("nft_reference")
    with pytest.raises(EvaluationError, match=re.escape(TORCH_EVALUATE_ONLY)):
        compare([deployed, deployed], lenet[1:], engine="torch", chips=1, quiet=True)


def test_ranges_from_a_calibrated_export_gives_torch_the_deployed_converters(checkpoints, lenet, npz, tmp_path):
    """A calibrated export's fixed DAC/ADC ranges, taken by --ranges-from: torch then agrees with ONNX Runtime
    chip by chip; without them it runs full-scale converters (training's) and differs."""
    from nft_deploy.export import export_model

    _, x, y = lenet
    path, _ = checkpoints("pcm_8bit")
    deployed = load_deployed(export_model(path, profile=None, calibrate=str(npz), calibration_samples=64,
                                          percentile=90.0).model)
    assert deployed.plan.ranges
    common = dict(chips=CHIPS, seed=SEED, quiet=True, workers=1)
    ort_run = evaluate(deployed, (x, y), **common)
    full, cal = (evaluate(path, (x, y), engine="torch", ranges_from=r, **common) for r in (None, deployed))
    flips = math.ceil(2 * SAMPLES / 1000)
    for run_ in (cal, full):
        gaps = [abs(a.accuracy - b.accuracy) * SAMPLES for a, b in zip(ort_run.per_chip, run_.per_chip, strict=True)]
        assert (max(gaps) <= flips) == (run_ is cal), gaps
    assert abs(ort_run.clean.confidence - cal.clean.confidence) <= 1e-3 < abs(ort_run.clean.confidence - full.clean.confidence)
    r = run("evaluate", path, "--data", npz, "--chips", 1, "--ranges-from", tmp_path / "none.onnx")
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "--ranges-from: applies to --engine torch" in r.output
    onnx.save(load_deployed(path).proto, tmp_path / "uncalibrated.onnx")
    r = run("evaluate", path, "--data", npz, "--engine", "torch", "--chips", 1, "--ranges-from",
            tmp_path / "uncalibrated.onnx")
    assert r.exit_code == 1 and "no calibrated converter ranges" in r.output and r.output.count("\n") == 1, r.output
    other = export_model(path, profile="rram_128x128_adc6", calibrate=str(npz), calibration_samples=64).model
    with pytest.raises(EvaluationError, match=r"--ranges-from .*not a calibrated export of .*pcm_8bit.pt: layer\(s\) "):
        evaluate(path, (x, y), engine="torch", ranges_from=load_deployed(other), chips=1, quiet=True)
