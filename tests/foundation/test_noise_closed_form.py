"""The noise model's closed-form std against the NFT formula and an independent per-cell simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nft_deploy.noise import NoiseModel, cell_std_factor, to_cell_range
from nft_deploy.profiles import DeviceProfile, ProgrammingVariation, ReadNoise, WeightSpec, load_profile

N = 100_000


def profile(bits=8, k=2, sigma=0.3, unit="cell_range", quantize=False, scale="per_layer", **kw) -> DeviceProfile:
    return DeviceProfile(name="t", weights=WeightSpec(bits=bits, bits_per_cell=k, quantize=quantize, scale=scale),
                         programming=ProgrammingVariation(sigma=sigma, unit=unit), **kw)


def nft_formula(bits: int, k: int) -> float:
    """sqrt(sum_j 2^(2jK)) / sum_j 2^(jK), j = 0 .. M/K - 1 (Qin et al., Negative Feedback
    Training, arXiv 2305.14561, as cited in device_profiles/nft_reference.json; K divides M)."""
    j = range(bits // k)
    return math.sqrt(sum(2 ** (2 * i * k) for i in j)) / sum(2 ** (i * k) for i in j)


def test_reference_setting_closed_form_is_0_7776_sigma_max_w():
    nm = NoiseModel(profile(sigma=0.3))
    assert nft_formula(8, 2) == pytest.approx(0.7776, abs=5e-5)
    assert nm.weight_std == pytest.approx(0.7776 * 0.3, rel=1e-4)
    assert nm.effective_weight_std(2.5) == pytest.approx(0.7776 * 0.3 * 2.5, rel=1e-4)
    assert NoiseModel(load_profile("nft_reference")).weight_std == pytest.approx(0.7776 * 0.3, rel=1e-4)


@pytest.mark.parametrize("bits,k", [(8, 2), (8, 4), (8, 1), (6, 3), (4, 2), (4, 4), (16, 4)])
def test_cell_std_factor_equals_the_nft_formula_when_k_divides_m(bits, k):
    assert cell_std_factor(WeightSpec(bits=bits, bits_per_cell=k)) == pytest.approx(nft_formula(bits, k), rel=1e-12)


def test_reference_setting_sampled_std_matches_within_2_percent():
    rng = np.random.default_rng(0)
    w = rng.uniform(-1.0, 1.0, N)
    w[0] = 2.5  # max|W| = 2.5
    noisy = NoiseModel(profile(sigma=0.3)).sample_chip(w, np.random.default_rng(1))
    dw = (noisy - w)[1:]
    assert np.std(dw, ddof=1) == pytest.approx(0.7776 * 0.3 * 2.5, rel=0.02)
    assert abs(np.mean(dw)) < 4 * 0.7776 * 0.3 * 2.5 / math.sqrt(N)


def test_level_convention_is_2k_minus_1_times_smaller_closed_form_and_sampled():
    cell, level = NoiseModel(profile(sigma=0.3)), NoiseModel(profile(sigma=0.3, unit="level"))
    assert cell.weight_std / level.weight_std == pytest.approx(3.0, rel=1e-12)
    assert NoiseModel(profile(k=4, sigma=0.3)).weight_std / NoiseModel(profile(k=4, sigma=0.3, unit="level")).weight_std \
        == pytest.approx(15.0, rel=1e-12)
    assert to_cell_range(0.3, "level", 2) == pytest.approx(0.1)
    w = np.random.default_rng(2).uniform(-1, 1, N)
    w[0] = 1.0
    s_cell = np.std(cell.sample_chip(w, np.random.default_rng(3)) - w)
    s_level = np.std(level.sample_chip(w, np.random.default_rng(4)) - w)
    assert s_cell / s_level == pytest.approx(3.0, rel=0.02)


def per_cell_reference(w: np.ndarray, bits: int, k: int, sigma: float, rng: np.random.Generator) -> tuple:
    """Independent numpy float64 simulation: quantize, split magnitudes into K-bit cells, add Gaussian noise
    to every cell's normalised conductance, recombine. Returns (clean quantized weight, noisy weight)."""
    s = np.max(np.abs(w))
    levels, cell_max = 2**bits - 1, 2**k - 1
    mag = np.rint(np.abs(w) / s * levels).astype(np.int64)
    cells = -(-bits // k)
    clean = np.zeros_like(w)
    noisy = np.zeros_like(w)
    rest = mag.copy()
    for j in range(cells):
        digit = rest % (cell_max + 1)
        rest //= cell_max + 1
        g = digit / cell_max
        g_noisy = g + sigma * rng.standard_normal(w.shape)
        clean += g * cell_max * (cell_max + 1) ** j
        noisy += g_noisy * cell_max * (cell_max + 1) ** j
    assert not rest.any()
    sign = np.sign(w)
    return sign * clean / levels * s, sign * noisy / levels * s


@pytest.mark.parametrize("bits,k", [(8, 2), (8, 3), (5, 2), (7, 4), (4, 4), (6, 1)])
def test_closed_form_matches_independent_per_cell_simulation(bits, k):
    sigma, scale = 0.2, 1.7
    w = np.random.default_rng(bits * 10 + k).uniform(-scale, scale, N)
    w[0] = scale
    clean, noisy = per_cell_reference(w, bits, k, sigma, np.random.default_rng(5))
    nm = NoiseModel(profile(bits=bits, k=k, sigma=sigma, quantize=True))
    ref_std = np.std(noisy - clean, ddof=1)
    assert nm.effective_weight_std(scale) == pytest.approx(ref_std, rel=0.02)
    ours = nm.sample_chip(w, np.random.default_rng(6))
    q = NoiseModel(profile(bits=bits, k=k, sigma=0.0, quantize=True)).sample_chip(w, np.random.default_rng(6))
    np.testing.assert_allclose(q, clean, rtol=0, atol=1e-12)  # the noise-free recombination is the quantized weight
    assert np.std(ours - q, ddof=1) == pytest.approx(ref_std, rel=0.03)


def test_read_noise_std_closed_form_and_sampled_per_channel():
    p = load_profile("pcm_8bit")
    nm = NoiseModel(p)
    assert nm.read_std == pytest.approx(0.015 * 15 * math.sqrt(1 + 256) / 255, rel=1e-12)
    w = np.random.default_rng(7).normal(size=(4, 25_000))
    w *= np.array([[0.5], [1.0], [2.0], [4.0]])
    r = nm.read_noise(w, np.random.default_rng(8))
    per_channel = np.std(r, axis=1, ddof=1) / np.abs(w).max(axis=1)
    np.testing.assert_allclose(per_channel, nm.read_std, rtol=0.03)
    quiet = NoiseModel(profile())
    assert quiet.read_std == 0 and not quiet.read_noise(w, np.random.default_rng(0)).any()


def test_read_noise_level_unit_and_is_independent_of_programming_sigma():
    a = NoiseModel(profile(sigma=0.0, read_noise=ReadNoise(sigma=0.3, unit="level")))
    b = NoiseModel(profile(sigma=0.4, read_noise=ReadNoise(sigma=0.1, unit="cell_range")))
    assert a.read_std == pytest.approx(b.read_std, rel=1e-12)
    assert a.weight_std == 0


def test_state_dependent_renormalisation_is_sqrt_of_0_4_s2_plus_0_6():
    for name, s in (("rram_state_dependent", 4.0), ("fefet_state_dependent", 6.0)):
        nm = NoiseModel(load_profile(name))
        assert nm.sigma_cell == pytest.approx(0.3 / math.sqrt(0.4 * s**2 + 0.6), rel=1e-12)
        assert nm.weight_std == pytest.approx(0.7776 * 0.3 / math.sqrt(0.4 * s**2 + 0.6), rel=1e-4)


def test_with_sigma_scales_the_closed_form_linearly():
    nm = NoiseModel(load_profile("rram_4bit"))
    assert nm.with_sigma(0.2).weight_std == pytest.approx(2 * nm.weight_std, rel=1e-12)
    assert nm.with_sigma(0.0).weight_std == 0.0
