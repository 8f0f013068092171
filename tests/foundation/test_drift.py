"""Drift against an independent float64 numpy reference of the formulas (issue 11): the law of nu, the weight
at time t, nu fixed per chip, and the compensation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nft_deploy import drift
from nft_deploy.chips import draw_chip
from nft_deploy.device_plan import FoundWeight, compile_plan
from nft_deploy.errors import ConfigError
from nft_deploy.noise import ChipDraw, NoiseModel
from nft_deploy.profiles import load_profile, profile_from_dict

YEAR = 365.25 * 86400


def _profile(**drift_section):
    return profile_from_dict({"schema_version": 1, "name": "d", "weights": {"bits": 8, "bits_per_cell": 4},
                              "drift": {"law": "pcm", **drift_section}})


def _pcm_reference(g):
    """The aihwkit PCM law written out again, float64."""
    lg = np.log(g)
    return np.minimum(np.maximum(-0.0155 * lg + 0.0244, 0.049), 0.1), \
        np.minimum(np.maximum(-0.0125 * lg - 0.0059, 0.008), 0.045)


def _digits(m, k, c):
    """Cell digits of integer magnitudes by repeated division (no floors shared with the code under test)."""
    return np.stack([(m // (2 ** (j * k))) % (2**k) for j in range(c)])


def test_the_pcm_law_matches_the_published_formulas_and_the_table_interpolates_linearly_in_g():
    g = np.array([1e-3, 0.01, 0.05, 0.2, 0.5, 1.0])
    mu, sd = drift.law_params(g, _profile().drift)
    ref_mu, ref_sd = _pcm_reference(g)
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-12)
    np.testing.assert_allclose(sd, ref_sd, rtol=1e-12)
    table = _profile(law="table", table=[[0.0, 0.1, 0.02], [0.5, 0.06, 0.01], [1.0, 0.03, 0.01]]).drift
    mu, sd = drift.law_params(np.array([0.0, 0.25, 0.5, 0.75, 1.0]), table)
    np.testing.assert_allclose(mu, [0.1, 0.08, 0.06, 0.045, 0.03])
    np.testing.assert_allclose(sd, [0.02, 0.015, 0.01, 0.01, 0.01])


@pytest.mark.parametrize("bits,k", [(8, 4), (8, 2), (6, 3), (5, 2)])
def test_cells_split_every_magnitude_into_its_digits(bits, k):
    spec = dataclasses.replace(load_profile("ideal").weights, bits=bits, bits_per_cell=k)
    m = np.arange(2**bits, dtype=np.float32)
    digits, contrib = drift.cells(m, spec)
    np.testing.assert_array_equal(digits, _digits(np.arange(2**bits), k, spec.cells))
    np.testing.assert_array_equal(contrib.sum(0), m)


def test_nu_statistics_per_conductance_match_the_law_over_a_fixed_seed():
    """Per conductance level of a 4-bit cell, 20,000 cells: mean and std of nu = |mu + sigma z| against the
    folded normal's closed form (tolerance: 4 standard errors)."""
    prof = _profile()
    nm = NoiseModel(prof)
    levels = np.repeat(np.arange(1, 16), 20_000)
    w = np.concatenate([levels, [15]]).astype(np.float64) * 17 / 255  # magnitude 17 d = digit d in both cells
    nu = drift.draw_chip_nu(nm, w, np.random.default_rng(5))
    for d in range(1, 16):
        got = nu[:, :-1][:, levels == d].ravel()
        mu, sd = (float(v) for v in _pcm_reference(np.array(d / 15)))
        from scipy.stats import foldnorm

        ref = foldnorm(mu / sd, scale=sd)
        assert abs(got.mean() - ref.mean()) < 4 * ref.std() / np.sqrt(got.size)
        assert abs(got.std() - ref.std()) < 4 * ref.std() / np.sqrt(got.size / 2)


def _reference_weight(w, nu, t, t0, k, c, bits):
    """The drifted weight of a quantized per-layer layer without programming noise, float64, from its cells."""
    s = np.abs(w).max()
    levels = 2**bits - 1
    m = np.round(np.abs(w) / s * levels).astype(np.int64)
    d = _digits(m, k, c)
    a = (max(t, t0) / t0) ** (-nu.astype(np.float64))
    return np.sign(w) * s * (d * (2 ** (k * np.arange(c)))[:, None] * a).sum(0) / levels


def test_the_weight_at_time_t_is_the_reference_and_its_chip_mean_follows_the_law():
    prof = _profile(t0=20.0)
    nm = NoiseModel(prof)
    w = np.random.default_rng(1).standard_normal(400)
    lay = compile_plan([FoundWeight("fc", "Gemm", "fc.weight", (400,))], prof).mapped[0]
    for t in (1.0, 20.0, 3600.0, YEAR):
        d = draw_chip([lay], {"fc.weight": w}, 3, 0)["fc"]
        got, std = drift.read_at(nm, w, d, 0, t)
        assert std is None
        np.testing.assert_allclose(got, _reference_weight(w, d.nu, t, 20.0, 4, 2, 8), rtol=1e-12, atol=1e-15)
    # over chips, the mean weight at 1 y is the level times E[(t/t0)^-|mu + sigma z|] per cell
    chips = np.stack([drift.read_at(nm, w, draw_chip([lay], {"fc.weight": w}, 3, i)["fc"], 0, YEAR)[0]
                      for i in range(300)])
    s, m = np.abs(w).max(), np.round(np.abs(w) / np.abs(w).max() * 255).astype(np.int64)
    z = np.linspace(-8, 8, 4001)
    pdf = np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    mean_a = []
    for d in range(16):
        mu, sd = (float(v) for v in _pcm_reference(np.array(max(d, 1e-30) / 15)))
        mean_a.append(np.trapezoid((YEAR / 20) ** -np.abs(mu + sd * z) * pdf, z))
    digits = _digits(m, 4, 2)
    expected = np.sign(w) * s * (digits * np.array([[1], [16]]) * np.asarray(mean_a)[digits]).sum(0) / 255
    se = chips.std(0, ddof=1) / np.sqrt(len(chips))  # tolerance: 5 standard errors of the chip mean, per weight
    assert (np.abs(chips.mean(0) - expected) <= 5 * se + 1e-12).all()


def test_nu_is_fixed_per_chip_two_reads_at_one_time_give_the_same_weights():
    prof = _profile()
    w = np.random.default_rng(2).standard_normal((6, 5))
    lay = compile_plan([FoundWeight("fc", "Gemm", "fc.weight", (6, 5))], prof).mapped[0]
    first = draw_chip([lay], {"fc.weight": w}, 9, 4)["fc"]
    again = draw_chip([lay], {"fc.weight": w}, 9, 4)["fc"]
    np.testing.assert_array_equal(first.nu, again.nu)
    a, b = (drift.read_at(lay.noise, w, d, 0, 86400.0)[0] for d in (first, again))
    np.testing.assert_array_equal(a, b)
    other = draw_chip([lay], {"fc.weight": w}, 9, 5)["fc"]
    assert not np.array_equal(first.nu, other.nu)


@pytest.mark.parametrize("mode", ["global", "per_column"])
def test_compensation_restores_a_layers_mean_output_magnitude_at_one_year_within_2_percent(mode):
    prof = dataclasses.replace(load_profile("pcm_drift"), drift=dataclasses.replace(
        load_profile("pcm_drift").drift, compensation=mode, read_noise=False))
    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 32, 3, 3)) * 0.1
    lay = compile_plan([FoundWeight("conv", "Conv", "conv.weight", w.shape)], prof).mapped[0]
    plain = dataclasses.replace(prof, drift=dataclasses.replace(prof.drift, compensation="none"))
    x = rng.standard_normal((500, 32 * 9))
    for chip in range(3):
        d = draw_chip([lay], {"conv.weight": w}, 0, chip)["conv"]
        w0 = lay.noise.apply_chip(w, d)
        wt = drift.read_at(lay.noise, w, d, 0, YEAR)[0]
        raw = drift.read_at(NoiseModel(plain), w, d, 0, YEAR)[0]
        y0, yt, yr = (np.abs(x @ v.reshape(64, -1).T).mean() for v in (w0, wt, raw))
        assert yr < 0.6 * y0, "a year of drift should shrink the outputs: the check would prove nothing"
        assert abs(yt / y0 - 1) < 0.02, (mode, yt / y0)


def test_a_chip_with_no_drift_draw_is_the_chip_at_t0():
    prof = _profile(compensation="global")
    w = np.random.default_rng(4).standard_normal((3, 4))
    got = drift.read_at(NoiseModel(prof), w, ChipDraw(np.zeros(w.shape)), 0, YEAR)[0]
    np.testing.assert_allclose(got, NoiseModel(prof).apply_chip(w, ChipDraw(np.zeros(w.shape))), rtol=1e-12)


def test_times_parse_with_units_and_bad_ones_name_the_flag():
    assert [drift.parse_time(v) for v in ("1s", "2m", "1h", "1d", "1y", 5)] == [1.0, 120.0, 3600.0, 86400.0,
                                                                              31557600.0, 5.0]
    assert drift.time_label(31557600.0) == "1y" and drift.time_label(20.0) == "20s"
    for bad in ("1w", "", "-1s", "0"):
        with pytest.raises(ConfigError, match="--time"):
            drift.parse_time(bad)


def test_training_draws_drift_at_train_time_straight_through_and_only_when_asked():
    import torch

    base = load_profile("pcm_drift")
    timed = dataclasses.replace(base, drift=dataclasses.replace(base.drift, train_time=YEAR, compensation="none"))
    w = torch.randn(16, 8, requires_grad=True)
    plain = drift.perturb(NoiseModel(base), w, torch.Generator().manual_seed(0))
    aged = drift.perturb(NoiseModel(timed), w, torch.Generator().manual_seed(0))
    aged.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight-through
    assert float(aged.detach().abs().mean()) < 0.6 * float(plain.detach().abs().mean())  # a year of drift, none
