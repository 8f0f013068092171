"""Stuck-at faults: observed rates, all-stuck limits and an independent per-cell reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import DeviceProfile, ProgrammingVariation, StuckAt, WeightSpec


def profile(bits=8, k=2, zero=0.0, full=0.0, quantize=True, sigma=0.0, scale="per_layer") -> DeviceProfile:
    return DeviceProfile(name="s", weights=WeightSpec(bits=bits, bits_per_cell=k, quantize=quantize, scale=scale),
                         programming=ProgrammingVariation(sigma=sigma), stuck_at=StuckAt(zero_rate=zero, full_rate=full))


def stuck_reference(w: np.ndarray, bits: int, k: int, u: np.ndarray, zero: float, full: float) -> np.ndarray:
    """Independent reference: weight (units of max|W|) after replacing stuck cells' digits with 0 or 2^K - 1."""
    s = np.max(np.abs(w))
    levels, base = 2**bits - 1, 2**k
    mag = np.rint(np.abs(w) / s * levels).astype(np.int64)
    out = np.zeros_like(w)
    for j in range(u.shape[0]):
        digit = (mag // base**j) % base
        digit = np.where(u[j] < zero, 0, np.where(u[j] < zero + full, base - 1, digit))
        out += digit * base**j
    return np.where(w >= 0, 1.0, -1.0) * out / levels


@pytest.mark.parametrize("bits,k", [(8, 2), (5, 2), (4, 4), (7, 3)])
def test_stuck_delta_matches_an_independent_digit_reference(bits, k):
    rng = np.random.default_rng(bits + k)
    w = rng.uniform(-3, 3, 20_000)
    nm = NoiseModel(profile(bits, k, zero=0.3, full=0.2))
    u = rng.random((nm.weights.cells, *w.shape))
    got = nm.quantize_normalised(w / np.abs(w).max()) + nm.stuck_delta(w, u)
    np.testing.assert_allclose(got, stuck_reference(w, bits, k, u, 0.3, 0.2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bits,k", [(8, 2), (5, 2), (3, 3)])
@pytest.mark.parametrize("quantize", [True, False])
def test_every_cell_stuck_at_zero_gives_weight_zero(bits, k, quantize):
    w = np.random.default_rng(0).normal(size=(6, 9))
    out = NoiseModel(profile(bits, k, zero=1.0, quantize=quantize)).sample_chip(w, np.random.default_rng(1))
    np.testing.assert_allclose(out, 0.0, atol=1e-12)


@pytest.mark.parametrize("bits,k", [(8, 2), (4, 1), (5, 2), (7, 3)])
def test_every_cell_stuck_at_full_gives_full_conductance_in_every_cell(bits, k):
    w = np.random.default_rng(0).normal(size=(6, 9))
    s = np.abs(w).max()
    out = NoiseModel(profile(bits, k, full=1.0)).sample_chip(w, np.random.default_rng(1))
    cells = -(-bits // k)
    full = (2**k - 1) * sum(2 ** (j * k) for j in range(cells)) / (2**bits - 1)  # 1 when K divides M
    assert (full == 1.0) == (bits % k == 0)
    np.testing.assert_allclose(out, np.where(w >= 0, 1, -1) * full * s, rtol=1e-12)


@pytest.mark.parametrize("bits,k", [(2, 2), (8, 2)])
def test_observed_stuck_rates_match_the_profile(bits, k):
    """Every cell of these weights holds digit 1, so each stuck cell moves the weight: -1 (at zero) or +2 (at
    full) levels of its cell; decoding the weight change in base 2^K recovers which cells stuck."""
    zero, full, n = 0.05, 0.02, 50_000
    base = 2**k
    ones = sum(base**j for j in range(bits // k)) / (2**bits - 1)
    w = np.full(n, ones)
    w[0] = 1.0  # sets the scale
    nm = NoiseModel(profile(bits, k, zero=zero, full=full))
    draw = nm.draw_chip(w.shape, np.random.default_rng(7), w)
    x = np.rint(draw.stuck_delta[1:] * (2**bits - 1)).astype(np.int64)
    n_zero = n_full = 0
    for _ in range(bits // k):
        c = np.mod(x, base)
        n_zero += np.count_nonzero(c == base - 1)  # digit -1
        n_full += np.count_nonzero(c == 2)  # digit +2
        x = (x - np.where(c == base - 1, -1, c)) // base
    assert not x.any()
    cells = (n - 1) * (bits // k)
    for observed, rate in ((n_zero, zero), (n_full, full)):
        assert abs(observed / cells - rate) < 5 * math.sqrt(rate * (1 - rate) / cells)


def test_stuck_faults_are_fixed_per_chip_seed_and_torch_training_sees_them_too():
    w = np.random.default_rng(0).normal(size=(64, 64))
    nm = NoiseModel(profile(zero=0.1, full=0.1))
    a = nm.draw_chip(w.shape, np.random.default_rng(3), w)
    np.testing.assert_array_equal(a.stuck_delta, nm.draw_chip(w.shape, np.random.default_rng(3), w).stuck_delta)
    with pytest.raises(ValueError, match="needs the weight"):
        nm.draw_chip(w.shape, np.random.default_rng(3))
    # torch path: same fault distribution (mean absolute change) within 5%
    t = nm.perturb(torch.tensor(w), torch.Generator().manual_seed(1)).numpy() - nm.apply_chip(
        w, type(a)(normal=np.zeros_like(w)))
    ref = np.mean([np.abs(nm.draw_chip(w.shape, np.random.default_rng(s), w).stuck_delta).mean() for s in range(4)])
    assert np.abs(t / np.abs(w).max()).mean() == pytest.approx(ref, rel=0.05)


def test_stuck_faults_work_for_scalar_and_one_dimensional_weights():
    nm = NoiseModel(profile(zero=1.0))
    for w in (np.float64(0.7), np.array([0.5, -1.0, 0.25])):
        assert np.all(nm.sample_chip(w, np.random.default_rng(0)) == 0)


@pytest.mark.parametrize("scale", ["per_layer", "per_channel"])
def test_a_chip_drawn_in_chunks_is_the_chip_drawn_whole(monkeypatch, scale):
    """The streamed draw (chunks of 7 values, only stuck uniforms kept) equals one whole-array draw of the
    same generator: float64 normals rounded to float32, and the dense ``stuck_delta`` of all uniforms."""
    import nft_deploy.noise as noise

    monkeypatch.setattr(noise, "DRAW_CHUNK", 7)
    nm = NoiseModel(profile(bits=6, k=2, zero=0.05, full=0.05, sigma=0.1, scale=scale))
    w = np.random.default_rng(3).normal(size=(6, 5, 3)).astype(np.float32)
    got = nm.draw_chip(w.shape, np.random.default_rng(9), w, out_axis=1)
    rng = np.random.default_rng(9)
    normal = rng.standard_normal(w.shape)
    delta = nm.stuck_delta(w.astype(np.float64), rng.random((nm.weights.cells, *w.shape)), out_axis=1)
    assert got.normal.dtype == np.float32
    np.testing.assert_array_equal(got.normal, normal.astype(np.float32))
    np.testing.assert_array_equal(got.stuck_delta, delta)
    assert np.count_nonzero(delta) > 5  # the case exercises stuck cells
