"""The ORT evaluator against the torch Monte Carlo of the training package, on the same chips, and the
on-the-fly deployment paths (float ONNX + profile, checkpoint)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from nft_deploy.converters.graph_pass import run_pass
from nft_deploy.converters.torch_to_onnx import TorchExportConfig, torch_to_onnx

from nft_deploy.checkpoint import save_checkpoint
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.runner import chip_logits, evaluate
from nft_deploy.models import build_model
from nft_deploy.profiles import ReadNoise, load_profile
from nft_deploy.training.montecarlo import torch_chip_logits, torch_monte_carlo


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    model = build_model("lenet5", width=0.5).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # sharper logits, so that chips flip predictions
    x = np.random.default_rng(0).random((48, 1, 28, 28)).astype(np.float32) - 0.5
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()  # clean accuracy 1: noise shows up as errors
    proto = torch_to_onnx(model, torch.zeros(2, 1, 28, 28), TorchExportConfig(exporter="torchscript")).model
    return model, proto, x, y


def _no_read_noise(name):
    return dataclasses.replace(load_profile(name), read_noise=ReadNoise())


@pytest.mark.parametrize("profile", ["nft_reference", "fefet_state_dependent", "rram_4bit"])
def test_ort_and_torch_monte_carlo_agree_chip_by_chip(lenet, profile):
    model, proto, x, y = lenet
    prof = _no_read_noise(profile)  # the torch Monte Carlo models weights only
    deployed = load_deployed(run_pass(proto, prof)[0])
    ort_run = evaluate(deployed, (x, y), chips=4, seed=5, quiet=True)
    torch_run = torch_monte_carlo(model, prof, x, y, chips=4, seed=5)
    assert [c.accuracy for c in ort_run.per_chip] == list(torch_run.accuracies)
    assert ort_run.accuracy.std > 0  # the chips differ, so equality above means something
    for chip in (0, 3):
        np.testing.assert_allclose(chip_logits(deployed, x, chip, seed=5),
                                   torch_chip_logits(model, prof, x, chip=chip, seed=5), atol=1e-4)


def test_float_onnx_with_profile_is_deployed_on_the_fly(lenet, tmp_path):
    import onnx

    model, proto, x, y = lenet
    onnx.save(proto, tmp_path / "float.onnx")
    r = evaluate(tmp_path / "float.onnx", (x, y), chips=3, profile="nft_reference", quiet=True)
    assert r.profile == "nft_reference" and r.clean.accuracy == 1.0 and r.accuracy.std > 0


def test_checkpoint_uses_its_stored_profile(lenet, tmp_path):
    model, _, x, y = lenet
    path = save_checkpoint(tmp_path / "m.pt", model=model, arch={"name": "lenet5", "kwargs": {"width": 0.5}},
                           profile=load_profile("fefet_state_dependent").to_dict(), method={"name": "plain"},
                           input_shape=(1, 28, 28))
    r = evaluate(path, (x, y), chips=2, quiet=True)
    assert r.profile == "fefet_state_dependent" and r.clean.accuracy == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no exported file left next to it
