"""Noisy forwards: which layers are mapped, fresh draws, the one noise model, batched == sequential."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import load_profile
from nft_deploy.training.noisy import NoisyModel, frozen_bn_stats, mapped_layers

REF = load_profile("nft_reference")
SAMPLE = torch.zeros(2, 1, 8, 8)  # what TinyNet takes


def _net(model, profile=REF, seed=0):
    return NoisyModel(model, profile, torch.Generator().manual_seed(seed), SAMPLE)


def test_mapped_layers_names_op_types_and_axes():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 3, 2), nn.Flatten(), nn.LazyLinear(4))
    m(torch.zeros(1, 1, 6, 6))
    got = [(lay.name, lay.op, lay.out_axis, lay.weight) for lay in mapped_layers(m, REF, torch.zeros(1, 1, 6, 6))]
    assert got == [("0", "Conv", 0, "0.weight"), ("1", "ConvTranspose", 1, "1.weight"), ("3", "Gemm", 0, "3.weight")]


def test_mapped_layers_honour_digital_layers_and_op_types(tiny_net):
    mapping = dataclasses.replace(REF.mapping, digital_layers=("fc2",), op_types=("Conv", "Gemm"))
    names = [lay.name for lay in mapped_layers(tiny_net, dataclasses.replace(REF, mapping=mapping), SAMPLE)]
    assert names == ["conv", "fc1"]  # fc2 stays digital
    only_conv = dataclasses.replace(REF, mapping=dataclasses.replace(REF.mapping, op_types=("Conv",)))
    assert [lay.name for lay in mapped_layers(tiny_net, only_conv, SAMPLE)] == ["conv"]


def test_a_linear_on_a_2d_input_is_a_gemm_so_matmul_alone_leaves_it_digital(tiny_net):
    """Regression: training once counted Linear as mapped whenever MatMul was listed, while export left
    the Gemm nodes digital."""
    conv_matmul = dataclasses.replace(REF, mapping=dataclasses.replace(REF.mapping, op_types=("Conv", "MatMul")))
    net = NoisyModel(tiny_net, conv_matmul, torch.Generator().manual_seed(0), SAMPLE)
    assert [lay.name for lay in net.layers] == ["conv"]
    assert set(net.sample_weights()) == {"conv.weight"}  # fc1 and fc2 are never perturbed


def test_noisy_forward_redraws_on_every_call(tiny_net):
    net = _net(tiny_net.eval())
    x = torch.rand(4, 1, 8, 8)
    a, b = net.noisy(x), net.noisy(x)
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, net.clean(x))


def test_noisy_weights_have_the_closed_form_std_and_leave_bias_alone(tiny_net):
    net = _net(tiny_net)
    w = tiny_net.fc1.weight
    diffs = torch.stack([net.sample_weights()["fc1.weight"] - w for _ in range(200)]).detach()
    expected = NoiseModel(REF).weight_std * float(w.detach().abs().max())  # 0.7776 * 0.3 * max|W|
    assert abs(float(diffs.std()) / expected - 1) < 0.02  # 204,800 samples: std error ~0.16%
    assert set(net.sample_weights()) == {"conv.weight", "fc1.weight", "fc2.weight"}


def test_gradient_passes_straight_through_and_not_through_max_abs(tiny_net):
    net = _net(tiny_net)
    w = tiny_net.fc2.weight
    noisy = net.sample_weights()["fc2.weight"]
    (noisy * 3.0).sum().backward()
    assert torch.allclose(w.grad, torch.full_like(w, 3.0))  # d(noisy)/dW = 1: scale and noise detached


def test_same_seed_same_draws_different_seed_different_draws(tiny_net):
    a = _net(tiny_net, seed=5).sample_weights()["conv.weight"]
    b = _net(tiny_net, seed=5).sample_weights()["conv.weight"]
    c = _net(tiny_net, seed=6).sample_weights()["conv.weight"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batched_and_sequential_extra_passes_agree_and_keep_bn_stats(tiny_net):
    x = torch.rand(6, 1, 8, 8)
    tiny_net.train()
    before = tiny_net.bn.running_mean.clone()
    seq = _net(tiny_net, seed=3).noisy_many(x, [0.45, 0.4, 0.35], batched=False)
    vm = _net(tiny_net, seed=3).noisy_many(x, [0.45, 0.4, 0.35], batched=True)
    assert seq.shape == (3, 6, 3)
    assert torch.allclose(seq, vm, atol=1e-5)
    assert torch.equal(tiny_net.bn.running_mean, before)  # extra passes leave running stats alone
    assert tiny_net.bn.track_running_stats
    _net(tiny_net).noisy(x)
    assert not torch.equal(tiny_net.bn.running_mean, before)  # the backbone pass updates them


def test_frozen_bn_stats_restores_tracking_after_an_error(tiny_net):
    try:
        with frozen_bn_stats(tiny_net):
            assert not tiny_net.bn.track_running_stats
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert tiny_net.bn.track_running_stats


def test_sigma_override_applies_to_every_mapped_layer(tiny_net):
    net = _net(tiny_net)
    assert {nm.profile.programming.sigma for nm in net.noise_models(0.45)} == {0.45}
    assert {nm.profile.programming.sigma for nm in net.noise_models()} == {0.3}
