"""``nft-deploy plan`` / ``nft_deploy.plan``: the rows every engine reads, from every kind of source, and
training that follows them (digital layers stay noise-free, converters are trained against)."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

import nft_deploy
from nft_deploy.checkpoint import save_checkpoint
from nft_deploy.cli import main
from nft_deploy.data import Dataset
from nft_deploy.export import export_model
from nft_deploy.models import build_model
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import load_profile, profile_from_dict
from nft_deploy.training import NoisyModel, TrainConfig, train
from nft_deploy.training.crossbars import on_device

CONV_MATMUL = {"schema_version": 1, "name": "conv_matmul", "programming": {"sigma": 0.1},
               "mapping": {"op_types": ["Conv", "MatMul"], "overrides": [{"layers": "conv2",
                                                                        "programming": {"sigma": 0.3}}]}}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan")
    torch.manual_seed(0)
    model = build_model("lenet5", width=0.5)
    save_checkpoint(d / "m.pt", model=model, arch={"name": "lenet5", "kwargs": {"width": 0.5}},
                    profile=load_profile("pcm_8bit").to_dict(), method={"name": "plain"}, input_shape=(1, 28, 28))
    torch.save(model.state_dict(), d / "sd.pt")
    (d / "cm.json").write_text(json.dumps(CONV_MATMUL))
    export_model(model, profile=None, no_device=True, input_shape=(1, 28, 28), output=d / "m.float.onnx")
    return d


def _plan(*args):
    return CliRunner().invoke(main, ["plan", *map(str, args)])


def test_plan_lists_lenet_linears_as_digital_when_only_conv_and_matmul_are_mapped(files):
    r = _plan(files / "sd.pt", "--model", "lenet5", "--width", "0.5", "--profile", files / "cm.json", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    rows = {row["name"]: row for row in doc["layers"]}
    assert [n for n, row in rows.items() if row["mapped"]] == ["conv1", "conv2"]
    for fc in ("fc1", "fc2", "fc3"):
        assert rows[fc]["reason"] == "op type Gemm not in mapping.op_types" and rows[fc]["op"] == "Gemm"
    assert rows["conv2"]["sigma"] == pytest.approx(0.3) and rows["conv1"]["weight_std"] == pytest.approx(
        NoiseModel(profile_from_dict(CONV_MATMUL)).weight_std)
    assert doc["mapped"] == 2 and doc["digital"] == 3


def test_every_source_kind_gives_the_same_rows(files):
    prof = profile_from_dict(CONV_MATMUL)
    ckpt = nft_deploy.plan(files / "m.pt", prof, sigma=0.2)
    state = nft_deploy.plan(files / "sd.pt", prof, sigma=0.2, model_name="lenet5", model_kwargs={"width": 0.5})
    graph = nft_deploy.plan(files / "m.float.onnx", prof, sigma=0.2)
    export_model(files / "m.pt", profile=prof, output=files / "m.cim.onnx")
    deployed = nft_deploy.plan(files / "m.cim.onnx", sigma=0.2)

    def rows(p):
        return [{k: v for k, v in lay.to_dict().items() if k != "node"} for lay in p.layers]

    assert rows(ckpt) == rows(state) == rows(graph) == rows(deployed)
    assert deployed.layers[1].device.programming.sigma == pytest.approx(0.6)  # the override keeps its 3x


def test_a_checkpoint_is_planned_on_its_stored_profile_and_the_table_shows_converters(files):
    r = _plan(files / "m.pt")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split() == ["layer", "op", "shape", "device", "sigma", "std/max|W|", "cells", "DAC", "ADC",
                                "noise/rms"]
    assert lines[1].split()[:4] == ["conv1", "Conv", "3x1x5x5", "mapped"] and lines[1].split()[-3:-1] == ["8", "8"]
    assert any("5 mapped, 0 digital; profile 'pcm_8bit'" in ln for ln in lines[-2:])


@pytest.mark.parametrize("args, message", [
    (["m.float.onnx"], "--profile: required for a float ONNX model"),
    (["sd.pt"], "pass --model NAME"),
    (["m.pt", "--profile", "nope.json"], "no such profile file"),
    (["m.pt", "--sigma", "-1"], "--sigma: must be a finite number >= 0"),
])
def test_bad_plan_input_is_one_line_and_exit_1(files, args, message):
    r = _plan(*[files / a if a.endswith((".pt", ".onnx")) else a for a in args])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_export_report_and_metadata_carry_the_plan(files):
    r = CliRunner().invoke(main, ["export", str(files / "m.pt"), "--profile", str(files / "cm.json"),
                                  "-o", str(files / "r.cim.onnx")])
    assert r.exit_code == 0, r.output
    assert re.search(r"fc1\s+Gemm\s+60x200\s+digital: op type Gemm not in mapping.op_types", r.output), r.output
    meta = {p.key: p.value for p in onnx.load(str(files / "r.cim.onnx")).metadata_props}
    assert [row["mapped"] for row in json.loads(meta["nft.plan"])["layers"]] == [True, True, False, False, False]


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return Dataset("rand28", x, y, x[:16], y[:16], 10)


def test_training_leaves_the_digital_linears_noise_free(monkeypatch):
    perturbed = []
    original = NoiseModel.perturb

    def spy(self, weight, *args, **kwargs):
        perturbed.append(tuple(weight.shape))
        return original(self, weight, *args, **kwargs)

    monkeypatch.setattr(NoiseModel, "perturb", spy)
    cfg = TrainConfig(model="lenet5", width=0.5, method="noise_injection", profile=profile_from_dict(CONV_MATMUL),
                      epochs=1, batch_size=32, progress=False)
    train(cfg, data=_data())
    assert perturbed and set(perturbed) == {(3, 1, 5, 5), (8, 3, 5, 5)}  # conv1 and conv2 only


def test_training_forwards_pass_through_the_profiles_converters_with_a_straight_through_gradient():
    torch.manual_seed(0)
    model = build_model("lenet5", width=0.5)
    x = torch.rand(4, 1, 28, 28)
    pcm, ideal_io = load_profile("pcm_8bit"), profile_from_dict({"schema_version": 1, "name": "q",
                                                                 "weights": {"bits": 8, "bits_per_cell": 4,
                                                                             "scale": "per_channel"},
                                                                 "programming": {"sigma": 0.04}})
    with_io = NoisyModel(model, pcm, torch.Generator().manual_seed(1), x[:2])
    without = NoisyModel(model, ideal_io, torch.Generator().manual_seed(1), x[:2])
    weights = without.sample_weights()
    with torch.no_grad():
        a = on_device(model, with_io.plan, weights, x)
        b = on_device(model, without.plan, weights, x)
    steps = a.abs().amax(dim=1, keepdim=True) / 127
    assert 0 < (a - b).abs().max() and torch.allclose(torch.round(a / steps) * steps, a, atol=1e-5)  # on the ADC grid
    out = with_io.noisy(x)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in with_io.mapped_weights())


class KeywordAndView(torch.nn.Module):
    """``F.linear`` with the weight by keyword (found by the probe), and ``x @ w.t()``, a view of a
    parameter (the exporter folds it into a new constant: the two plans differ there, and export says so)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(8, 6))
        self.b = torch.nn.Parameter(torch.randn(3, 8))

    def forward(self, x):
        return torch.nn.functional.linear(input=x, weight=self.a) @ self.b.t()


def test_export_names_the_layers_where_training_and_the_graph_plan_differ():
    torch.manual_seed(0)
    net = KeywordAndView()
    res = export_model(net, profile="rram_4bit", input_shape=(6,))
    assert "a" in [lay.name for lay in res.report.plan.mapped]
    assert [lay.name for lay in nft_deploy.plan(net, "rram_4bit", input_shape=(6,)).mapped] == ["a"]
    (note,) = [n for n in res.notes if "differently" in n]
    assert "1 layer(s)" in note and "mapped in the graph only" in note and "a (" not in note


def test_export_of_a_checkpoint_without_profile_uses_the_stored_one(files, tmp_path):
    r = CliRunner().invoke(main, ["export", str(files / "m.pt"), "-o", str(tmp_path / "m.cim.onnx")])
    assert r.exit_code == 0, r.output
    assert "Profile  | pcm_8bit" in r.output
    r = CliRunner().invoke(main, ["export", str(files / "sd.pt"), "--model", "lenet5", "--width", "0.5"])
    assert r.exit_code == 1 and "--profile: required" in r.output and len(r.output.strip().splitlines()) == 1


def test_a_noisy_method_on_a_profile_that_maps_nothing_is_one_config_error():
    from nft_deploy.errors import ConfigError

    nothing = profile_from_dict({"schema_version": 1, "name": "none", "programming": {"sigma": 0.1},
                                 "mapping": {"digital_layers": ["*"]}})
    cfg = TrainConfig(model="lenet5", width=0.5, method="ovf", profile=nothing, epochs=1, progress=False)
    with pytest.raises(ConfigError, match="maps no layer of this model.*nft-deploy plan"):
        train(cfg, data=_data())
    train(TrainConfig(model="lenet5", width=0.5, method="plain", profile=nothing, epochs=1, progress=False),
          data=_data())  # plain training needs no device


def test_plan_of_a_torchscript_file_is_one_line_pointing_at_its_onnx_export(files, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(build_model("lenet5", width=0.5)), str(tmp_path / "m.ts.pt"))
    r = _plan(tmp_path / "m.ts.pt", "--input-shape", "1,28,28", "--profile", "rram_4bit")
    assert r.exit_code == 1 and "TorchScript" in r.output and "--no-device" in r.output


class SumOfWeight(torch.nn.Module):
    """``fc.weight.sum()`` reads the weight outside its crossbar; the exporter folds it into a constant of
    the clean weight, so only torch sees that read: training keeps fc digital, the graph would map it."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 3, 3)
        self.fc = torch.nn.Linear(3 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv1(x)), 1)) + self.fc.weight.sum()


def test_a_read_only_torch_sees_is_named_by_export():
    torch.manual_seed(0)
    res = export_model(SumOfWeight().eval(), profile="rram_4bit", input_shape=(1, 8, 8))
    (note,) = [n for n in res.notes if "differently" in n]
    assert "fc (Gemm) mapped in the graph only" in note


def test_plan_shows_noise_to_rms_from_the_weights_the_same_for_torch_and_onnx(files):
    """pcm_8bit quantizes per channel, so the closed form is the rms of weight_std x each channel's max|W|
    over the quantized levels; the checkpoint (torch) and its float ONNX export give the same numbers."""
    from nft_deploy.planning import plan_with_noise

    torch_plan_, torch_ratios = plan_with_noise(files / "m.pt")
    _, onnx_ratios = plan_with_noise(files / "m.float.onnx", "pcm_8bit")
    assert torch_ratios.keys() == onnx_ratios.keys() == {lay.name for lay in torch_plan_.mapped}
    for name, r in torch_ratios.items():
        assert onnx_ratios[name] == pytest.approx(r, rel=1e-6)
    sd = torch.load(files / "sd.pt", weights_only=True)
    w = sd["fc1.weight"].double().numpy()
    nm = NoiseModel(load_profile("pcm_8bit"))
    scale = np.abs(w).max(axis=1, keepdims=True)  # per output channel
    want = np.sqrt(np.mean((nm.weight_std * scale) ** 2 * np.ones_like(w))) / np.sqrt(np.mean(w**2))
    assert torch_ratios["fc1"] == pytest.approx(want, rel=1e-6)  # no state dependence: the std is flat per channel
    out = CliRunner().invoke(main, ["plan", str(files / "m.pt")])
    assert out.exit_code == 0 and "noise/rms" in out.output and f"{torch_ratios['fc1']:.3f}" in out.output
