"""Parity of the deployed ONNX graph with the torch side of the one noise model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nft_deploy.chips import chip_feeds, draw_chip
from nft_deploy.export import export_model, insert_device_nodes
from nft_deploy.noise import NoiseModel, quantize_activation
from nft_deploy.profiles import load_profile

MODELS = ("lenet5", "vgg8", "resnet18")


def _replace(profile, **sections):
    for section, changes in sections.items():
        profile = dataclasses.replace(profile, **{section: dataclasses.replace(getattr(profile, section), **changes)})
    return profile


def _torch(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", MODELS)
def test_zero_chip_without_quantization_equals_torch_within_1e5(built_in, helpers, name):
    b = built_in[name]
    out, _ = insert_device_nodes(b.onnx, "nft_reference")
    (y,) = helpers.ort_run(out, helpers.zero_feeds(out, b.x))
    np.testing.assert_allclose(y, _torch(b.module, b.x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_quantized_noise_free_graph_matches_torch_quantized_forward(built_in, helpers, name):
    b = built_in[name]
    prof = _replace(load_profile("rram_4bit"), programming={"sigma": 0.0}, read_noise={"sigma": 0.0},
                    stuck_at={"zero_rate": 0.0, "full_rate": 0.0})
    out, report = insert_device_nodes(b.onnx, prof)
    ref = helpers.torch_deployed(b.module, report.layers, prof)
    names = [f"nft/{lay.name}/weight" for lay in report.layers]
    y, *weights = helpers.ort_run(out, helpers.zero_feeds(out, b.x), [out.graph.output[0].name, *names])
    for lay, w in zip(report.layers, weights, strict=True):
        tw = ref.get_parameter(lay.weight).detach().numpy()
        step = np.abs(b.module.get_parameter(lay.weight).detach().numpy()).max() / prof.weights.levels
        assert np.abs(w - tw).max() <= step * 1.001, lay.name  # at most one quantization step
    np.testing.assert_allclose(y, _torch(ref, b.x), rtol=0, atol=1e-4)
    assert np.abs(y - _torch(b.module, b.x)).max() > 1e-3  # quantization is really on


@pytest.mark.parametrize("profile", ["nft_reference", "rram_state_dependent", "rram_4bit", "pcm_8bit"])
@pytest.mark.parametrize("name", MODELS)
def test_same_numpy_chip_fed_to_onnx_and_torch_gives_same_logits(built_in, helpers, name, profile):
    b = built_in[name]
    prof = _replace(load_profile(profile), read_noise={"sigma": 0.0}, io={"input_bits": None, "output_bits": None})
    out, report = insert_device_nodes(b.onnx, prof)
    weights = {k: v.detach().numpy() for k, v in b.module.named_parameters()}
    draws = draw_chip(report.layers, weights, seed=11, chip=3)
    feeds = {**chip_feeds(report.layers, draws), out.graph.input[0].name: b.x}
    (y,) = helpers.ort_run(out, feeds)
    y_torch = _torch(helpers.torch_deployed(b.module, report.layers, prof, draws), b.x)
    np.testing.assert_allclose(y, y_torch, rtol=0, atol=1e-4)
    assert np.abs(y - _torch(b.module, b.x)).max() > 1e-3  # the chip really perturbs the model


def test_dac_and_adc_match_torch_quantize_activation_hooks(built_in, helpers):
    b = built_in["lenet5"]
    prof = _replace(load_profile("pcm_8bit"), read_noise={"sigma": 0.0})
    out, report = insert_device_nodes(b.onnx, prof)
    ref = helpers.torch_deployed(b.module, report.layers, prof)
    for lay in report.layers:
        m = ref.get_submodule(lay.name)
        m.register_forward_pre_hook(lambda _m, a: (quantize_activation(a[0], 8),))
        m.register_forward_hook(lambda _m, _a, o: quantize_activation(o, 8))
    (y,) = helpers.ort_run(out, helpers.zero_feeds(out, b.x))
    y_ref = _torch(ref, b.x)
    assert np.abs(y - y_ref).max() <= 2 * np.abs(y_ref).max() / 127  # within one ADC step of the output


class UserNet(torch.nn.Module):
    """A user-defined module with every handled op: Conv, ConvTranspose, MatMul on a bare parameter, Linear."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.up = torch.nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.proj = torch.nn.Parameter(torch.randn(2 * 16 * 16, 24) * 0.05)
        self.head = torch.nn.Linear(24, 5)

    def forward(self, x):
        h = torch.relu(self.up(torch.relu(self.conv(x))))
        return self.head(torch.relu(torch.flatten(h, 1) @ self.proj))


def test_user_defined_module_parity_under_noise_and_layer_contract(helpers):
    torch.manual_seed(0)
    net = UserNet().eval()
    prof = _replace(load_profile("pcm_8bit"), read_noise={"sigma": 0.0}, io={"input_bits": None, "output_bits": None})
    res = export_model(net, profile=prof, input_shape=(1, 8, 8))
    report, out = res.report, res.model
    assert [(lay.name, lay.weight, lay.op, lay.out_axis) for lay in report.layers] == [
        ("conv", "conv.weight", "Conv", 0), ("up", "up.weight", "ConvTranspose", 1),
        ("proj", "proj", "MatMul", 1), ("head", "head.weight", "Gemm", 0)]
    weights = {k: v.detach().numpy() for k, v in net.named_parameters()}
    draws = draw_chip(report.layers, weights, seed=0, chip=0)
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    (y,) = helpers.ort_run(out, {**chip_feeds(report.layers, draws), out.graph.input[0].name: x})
    np.testing.assert_allclose(y, _torch(helpers.torch_deployed(net, report.layers, prof, draws), x), atol=1e-4)


def test_perturbation_inside_the_graph_has_the_closed_form_std(helpers):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(256, 256)).eval()
    prof = load_profile("rram_state_dependent")  # float weights, std x4 in the band 0.25 < |w|/max|w| < 0.75
    res = export_model(net, profile=prof, input_shape=(256,))
    (lay,) = res.report.layers
    n = np.random.default_rng(5).standard_normal(lay.shape).astype(np.float32)
    (w_chip,) = helpers.ort_run(res.model, {lay.chip_input: n, res.model.graph.input[0].name:
                                            np.zeros((1, 256), np.float32)}, [f"nft/{lay.name}/weight"])
    w = net[0].weight.detach().numpy().astype(np.float64)
    z = (w_chip - w) / np.abs(w).max()
    nm = NoiseModel(prof)
    band = nm.state_mask(w / np.abs(w).max())
    assert band.sum() > 10000 and (~band).sum() > 10000
    # >10k samples each: the sample std is within 2% of its expectation with overwhelming probability
    assert abs(z[~band].std() / nm.weight_std - 1) < 0.02
    assert abs(z[band].std() / (4 * nm.weight_std) - 1) < 0.02
