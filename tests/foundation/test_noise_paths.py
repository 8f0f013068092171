"""The noise model's torch (training) and numpy (deployment) paths: quantization, gradients, state
dependence, determinism and edge cases, each against an independent reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nft_deploy.noise import ZERO_SCALE, ChipDraw, NoiseModel, quantize_activation
from nft_deploy.profiles import DeviceProfile, ProgrammingVariation, ReadNoise, StateDependence, WeightSpec

N = 100_000


def profile(bits=8, k=2, sigma=0.3, quantize=False, scale="per_layer", factor=None, read=0.0) -> DeviceProfile:
    sd = None if factor is None else StateDependence(factor=factor)
    return DeviceProfile(name="t", weights=WeightSpec(bits=bits, bits_per_cell=k, quantize=quantize, scale=scale),
                         programming=ProgrammingVariation(sigma=sigma, state_dependent=sd),
                         read_noise=ReadNoise(sigma=read))


def quantize_reference(w: np.ndarray, bits: int, per_channel_axis: int | None) -> np.ndarray:
    """Independent reference: channel by channel, levels = rint(|w| / max|w| * (2^M - 1)), sign kept."""
    levels = 2**bits - 1
    out = np.empty_like(w)
    moved_w = np.moveaxis(w, per_channel_axis, 0) if per_channel_axis is not None else w[None]
    moved_o = np.moveaxis(out, per_channel_axis, 0) if per_channel_axis is not None else out[None]
    for c in range(moved_w.shape[0]):
        ch = moved_w[c]
        s = np.max(np.abs(ch))
        moved_o[c] = np.sign(ch) * np.rint(np.abs(ch) / s * levels) / levels * s
    return out


@pytest.mark.parametrize("scale,out_axis", [("per_layer", 0), ("per_channel", 0), ("per_channel", 1),
                                            ("per_channel", -1)])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantization_is_exact_against_a_numpy_reference(scale, out_axis, bits):
    w = np.random.default_rng(bits).normal(size=(6, 5, 3, 3)) * np.arange(1, 7)[:, None, None, None]
    nm = NoiseModel(profile(bits=bits, sigma=0.0, quantize=True, scale=scale))
    ref = quantize_reference(w, bits, None if scale == "per_layer" else out_axis % 4)
    zero = ChipDraw(normal=np.zeros_like(w))
    np.testing.assert_allclose(nm.apply_chip(w, zero, out_axis), ref, rtol=1e-14, atol=0)
    wt = torch.tensor(w)
    np.testing.assert_allclose(nm.apply_chip_torch(wt, zero, out_axis).numpy(), ref, rtol=1e-14, atol=0)
    np.testing.assert_allclose(nm.perturb(wt, out_axis=out_axis).detach().numpy(), ref, rtol=1e-14, atol=0)
    s = nm.scale(w, out_axis)
    assert len(np.unique(np.abs(np.rint(nm.quantize_normalised(w / s) * (2**bits - 1))))) <= 2**bits


def test_unquantized_profile_keeps_float_weights():
    w = np.random.default_rng(0).normal(size=(8, 8))
    nm = NoiseModel(profile(sigma=0.0, quantize=False))
    np.testing.assert_allclose(nm.sample_chip(w, np.random.default_rng(0)), w, rtol=1e-14)


@pytest.mark.parametrize("quantize", [False, True])
def test_gradient_reaches_the_weight_straight_through_and_not_the_noise_or_scale(quantize):
    w = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(16, 8, dtype=torch.float64)
    nm = NoiseModel(profile(sigma=0.3, quantize=quantize, scale="per_channel", factor=4.0, read=0.05))
    out = nm.perturb(w, torch.Generator().manual_seed(0))
    (out * upstream).sum().backward()
    # exactly the upstream gradient: a gradient through max|W| or the state mask would change the max entries
    torch.testing.assert_close(w.grad, upstream, rtol=0, atol=0)
    # the noise is a constant of the weight: the same generator gives the same perturbation at a nearby weight
    w2 = (w.detach() * 1.001).requires_grad_()
    out2 = nm.perturb(w2, torch.Generator().manual_seed(0))
    delta = (out - w).detach() / nm.scale(w.detach())
    delta2 = (out2 - w2).detach() / nm.scale(w2.detach())
    if not quantize:
        torch.testing.assert_close(delta, delta2, rtol=1e-6, atol=1e-9)


def test_activation_quantization_matches_numpy_per_sample_and_passes_gradient_straight_through():
    x = np.random.default_rng(1).normal(size=(4, 10))
    x[2] *= 50  # one loud sample must not coarsen the others' steps: the range is per sample
    m = np.abs(x).max(axis=1, keepdims=True)
    ref = np.rint(x / m * 127) / 127 * m
    np.testing.assert_allclose(quantize_activation(x, 8), ref, rtol=1e-14)
    np.testing.assert_allclose(quantize_activation(x[:2], 8), ref[:2], rtol=1e-14)  # independent of the batch
    xt = torch.tensor(x, requires_grad=True)
    y = quantize_activation(xt, 8)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-14)
    y.sum().backward()
    assert torch.equal(xt.grad, torch.ones_like(xt))
    with pytest.raises(ValueError):
        quantize_activation(x, 1)


@pytest.mark.parametrize("prof", [profile(sigma=0.3), profile(sigma=0.2, quantize=True, bits=4),
                                  profile(sigma=0.3, factor=4.0)], ids=["nft", "quantized", "state_dependent"])
def test_torch_and_numpy_paths_agree_in_mean_and_std(prof):
    w = np.random.default_rng(11).uniform(-1, 1, N)
    w[0] = 1.0
    nm = NoiseModel(prof)
    q = NoiseModel(DeviceProfile(name="q", weights=prof.weights)).sample_chip(w, np.random.default_rng(0))
    d_np = nm.sample_chip(w, np.random.default_rng(12)) - q
    d_t = nm.perturb(torch.tensor(w), torch.Generator().manual_seed(13)).detach().numpy() - q
    std = np.sqrt(np.mean(nm.std_map(q) ** 2))
    tol = 5 * std / math.sqrt(N)
    assert abs(d_np.mean()) < tol and abs(d_t.mean()) < tol
    assert np.std(d_t) == pytest.approx(np.std(d_np), rel=0.02)
    assert np.std(d_np) == pytest.approx(std, rel=0.02)
    if prof.programming.state_dependent is not None:  # and per band
        band = nm.state_mask(q)
        for sel in (band, ~band):
            assert np.std(d_t[sel]) == pytest.approx(np.std(d_np[sel]), rel=0.03)


def test_perturb_adds_read_noise_in_quadrature_unless_read_is_false():
    nm = NoiseModel(profile(sigma=0.3, read=0.2))
    w = torch.empty(N, dtype=torch.float64).uniform_(-1, 1)
    w[0] = 1.0
    with_read = (nm.perturb(w, torch.Generator().manual_seed(0)) - w).std().item()
    without = (nm.perturb(w, torch.Generator().manual_seed(1), read=False) - w).std().item()
    assert with_read == pytest.approx(math.hypot(nm.weight_std, nm.read_std), rel=0.02)
    assert without == pytest.approx(nm.weight_std, rel=0.02)


def test_state_mask_is_the_open_band_0_25_to_0_75_and_std_map_scales_it_by_s():
    nm = NoiseModel(profile(sigma=0.3, factor=4.0))
    q = np.array([-1.0, -0.75, -0.5, -0.25, 0.0, 0.1, 0.2500001, 0.7499999, 0.75, 0.9])
    expected = np.array([0, 0, 1, 0, 0, 0, 1, 1, 0, 0], bool)
    np.testing.assert_array_equal(nm.state_mask(q), expected)
    np.testing.assert_array_equal(nm.state_mask(torch.tensor(q)).numpy(), expected)
    base = 0.3 / math.sqrt(0.4 * 16 + 0.6) * 0.77763
    np.testing.assert_allclose(nm.std_map(q), np.where(expected, 4 * base, base), rtol=1e-4)
    np.testing.assert_allclose(nm.std_map(torch.tensor(q)).numpy(), nm.std_map(q), rtol=1e-12)
    plain = NoiseModel(profile(sigma=0.3))
    assert not plain.state_mask(q).any() and not plain.state_mask(torch.tensor(q)).any()
    np.testing.assert_allclose(plain.std_map(q), plain.weight_std)


def test_state_dependent_sampled_std_in_band_is_s_times_out_of_band():
    nm = NoiseModel(profile(sigma=0.3, factor=6.0))
    w = np.random.default_rng(3).uniform(-1, 1, N)
    w[0] = 1.0
    d = nm.sample_chip(w, np.random.default_rng(4)) - w
    band = (np.abs(w) > 0.25) & (np.abs(w) < 0.75)
    assert np.std(d[band]) == pytest.approx(6 * nm.weight_std, rel=0.02)
    assert np.std(d[~band]) == pytest.approx(nm.weight_std, rel=0.02)


def test_same_seed_gives_the_same_numpy_draw_and_another_seed_does_not():
    nm = NoiseModel(profile(sigma=0.3, quantize=True))
    w = np.random.default_rng(0).normal(size=(5, 7))
    a = nm.sample_chip(w, np.random.default_rng(42))
    np.testing.assert_array_equal(a, nm.sample_chip(w, np.random.default_rng(42)))
    assert not np.allclose(a, nm.sample_chip(w, np.random.default_rng(43)))
    d1, d2 = nm.draw_chip(w.shape, np.random.default_rng(9)), nm.draw_chip(w.shape, np.random.default_rng(9))
    np.testing.assert_array_equal(d1.normal, d2.normal)
    t1 = nm.perturb(torch.tensor(w), torch.Generator().manual_seed(5))
    torch.testing.assert_close(t1, nm.perturb(torch.tensor(w), torch.Generator().manual_seed(5)), rtol=0, atol=0)


def test_apply_chip_torch_gives_the_same_numbers_as_apply_chip():
    nm = NoiseModel(profile(sigma=0.3, quantize=True, scale="per_channel", factor=2.0))
    w = np.random.default_rng(1).normal(size=(4, 3, 3, 3))
    draw = nm.draw_chip(w.shape, np.random.default_rng(2))
    np.testing.assert_allclose(nm.apply_chip_torch(torch.tensor(w), draw).numpy(), nm.apply_chip(w, draw), rtol=1e-13)


def test_all_zero_layer_and_zero_channel_carry_no_noise():
    for scale in ("per_layer", "per_channel"):
        nm = NoiseModel(profile(sigma=0.4, quantize=True, scale=scale))
        z = np.zeros((3, 4))
        assert np.abs(nm.sample_chip(z, np.random.default_rng(0))).max() < 1e-20
        zt = torch.zeros(3, 4, requires_grad=True)
        out = nm.perturb(zt, torch.Generator().manual_seed(0))
        assert out.abs().max().item() < 1e-20 and torch.isfinite(out).all()
        out.sum().backward()
        assert torch.equal(zt.grad, torch.ones(3, 4))
        assert float(nm.scale(z).min()) == ZERO_SCALE
    nm = NoiseModel(profile(sigma=0.4, scale="per_channel"))
    w = np.random.default_rng(1).normal(size=(3, 50))
    w[1] = 0.0
    noisy = nm.sample_chip(w, np.random.default_rng(2))
    assert np.abs(noisy[1]).max() < 1e-20 and np.abs(noisy[0] - w[0]).max() > 1e-3


def test_zero_layer_in_half_precision_stays_finite_and_zero():
    nm = NoiseModel(profile(sigma=0.4))
    out = nm.perturb(torch.zeros(4, 4, dtype=torch.float16), torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all() and out.abs().max().item() < 1e-3


def test_one_dimensional_weight_gets_one_per_layer_scale_even_per_channel():
    nm = NoiseModel(profile(scale="per_channel"))
    w = np.array([0.5, -2.0, 1.0])
    np.testing.assert_array_equal(nm.scale(w), [2.0])
    np.testing.assert_array_equal(nm.scale(torch.tensor(w)).numpy(), [2.0])
    assert nm.scale(np.float64(-3.0)) == 3.0


def test_numpy_path_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys, numpy as np; from nft_deploy.noise import NoiseModel; from nft_deploy.profiles import "
            "load_profile; nm = NoiseModel(load_profile('rram_4bit')); "
            "nm.sample_chip(np.ones((2, 2)), np.random.default_rng(0)); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
