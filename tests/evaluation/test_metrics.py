"""Metric definitions against hand-computed values and independent direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nft_deploy.evaluation import metrics as M


def test_softmax_entropy_kl_match_hand_values():
    p = M.softmax(np.array([[0.0, math.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.25, 0.75]])
    assert M.entropy(p)[0] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert M.entropy(np.array([[1.0, 0.0]]))[0] == 0.0
    kl = M.kl_divergence(np.array([[0.5, 0.5]]), np.array([[0.25, 0.75]]))[0]
    assert kl == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75))


def test_ece_of_a_hand_made_prediction_set():
    # bins of width 1/10: (0.2, 0.3] holds conf 0.25 x2 (1 correct); (0.9, 1.0] holds 0.95 x2 (both correct)
    conf = np.array([0.25, 0.25, 0.95, 0.95])
    correct = np.array([1, 0, 1, 1])
    expected = 0.5 * abs(0.5 - 0.25) + 0.5 * abs(1.0 - 0.95)
    assert M.ece(conf, correct, n_bins=10) == pytest.approx(expected)


def test_chip_accumulator_streams_to_the_direct_definitions():
    rng = np.random.default_rng(0)
    probs = M.softmax(rng.normal(size=(50, 4)) * 2)
    y = rng.integers(0, 4, 50)
    clean = rng.integers(0, 4, 50)
    acc = M.ChipAccumulator(7)
    for idx in np.array_split(np.arange(50), 3):
        acc.update(probs[idx], y[idx], clean[idx])
    c = acc.finish()
    pred, conf = probs.argmax(1), probs.max(1)
    assert c.chip == 7
    assert c.accuracy == pytest.approx((pred == y).mean())
    assert c.confidence == pytest.approx(conf.mean())
    assert c.entropy == pytest.approx(M.entropy(probs).mean())
    assert c.flip_rate == pytest.approx((pred != clean).mean())
    assert c.ece == pytest.approx(M.ece(conf, pred == y))


def test_streamed_ekl_equals_mean_kl_to_the_chip_average():
    rng = np.random.default_rng(1)
    chip_probs = np.stack([M.softmax(rng.normal(size=(30, 5)) * 3) for _ in range(6)])
    sums = M.MeanProbSum(30, 5)
    for p in chip_probs:
        sums.add(np.arange(30), p)
        sums.chips += 1
    expected_entropy = float(np.mean([M.entropy(p).mean() for p in chip_probs]))
    ekl, predictive = M.ekl_from_sums(sums.mean(), expected_entropy)
    assert ekl == pytest.approx(M.epistemic_kl(chip_probs), abs=1e-8)
    assert predictive == pytest.approx(M.entropy(chip_probs.mean(0)).mean(), abs=1e-8)


def test_fixed_point_sums_do_not_depend_on_merge_order():
    rng = np.random.default_rng(2)
    parts = [M.softmax(rng.normal(size=(8, 3))) for _ in range(5)]
    a, b = M.MeanProbSum(8, 3), M.MeanProbSum(8, 3)
    for p in parts:
        a.add(np.arange(8), p)
    for p in reversed(parts):
        b.add(np.arange(8), p)
    assert np.array_equal(a.total, b.total)


@pytest.mark.parametrize(("q", "df", "table"), [(0.975, 1, 12.7062), (0.975, 9, 2.2622), (0.995, 9, 3.2498),
                                                 (0.975, 199, 1.9720), (0.995, 199, 2.6008), (0.95, 30, 1.6973)])
def test_t_quantile_matches_statistical_tables(q, df, table):
    assert M.t_quantile(q, df) == pytest.approx(table, abs=1e-4)
    assert M.t_quantile(1 - q, df) == pytest.approx(-table, abs=1e-4)


@pytest.mark.parametrize(("n", "level"), [(3, 0.95), (5, 0.99), (30, 0.95)])
def test_mean_interval_covers_the_true_mean_at_its_level_in_a_float64_simulation(n, level):
    """Independent of any quantile code: over 20,000 normal samples of n values, the interval holds the true
    mean in ``level`` of them (binomial std about 0.0015 at 0.95, so 0.006 is four of them)."""
    rng = np.random.default_rng(11)
    draws = rng.normal(loc=0.3, scale=2.0, size=(20_000, n))
    hits = 0
    for row in draws:
        ci = M.mean_interval(row, level)
        hits += ci.low <= 0.3 <= ci.high
    assert hits / len(draws) == pytest.approx(level, abs=0.006)


def test_accuracy_stats_against_hand_computation():
    accs = [0.9, 0.8, 0.7, 1.0]
    s = M.accuracy_stats(accs)
    mean, std = 0.85, math.sqrt(((0.05**2) * 2 + 0.15**2 * 2) / 3)
    assert s.mean == pytest.approx(mean)
    assert s.std == pytest.approx(std)
    half95 = 3.182446 * std / 2  # t_{0.975, 3} = 3.182446
    assert (s.ci95.low, s.ci95.high) == pytest.approx((mean - half95, mean + half95), abs=1e-6)
    assert s.ci99.high - s.ci99.low > s.ci95.high - s.ci95.low
    assert (s.min, s.max, s.p50) == pytest.approx((0.7, 1.0, 0.85))
    assert s.p5 == pytest.approx(0.7 + 0.15 * 0.1)  # linear interpolation at rank 0.15


def test_single_chip_has_zero_std_and_a_degenerate_interval():
    s = M.accuracy_stats([0.5])
    assert s.std == 0.0 and s.ci95.low == s.ci95.high == 0.5


def test_paired_difference_uses_chip_by_chip_differences():
    base, new = [0.5, 0.6, 0.7], [0.55, 0.66, 0.74]
    d = M.paired_difference(new, base)
    diffs = np.array([0.05, 0.06, 0.04])
    assert d.mean == pytest.approx(diffs.mean())
    assert d.std == pytest.approx(diffs.std(ddof=1))
    half = 4.302653 * diffs.std(ddof=1) / math.sqrt(3)
    assert d.ci95.low == pytest.approx(diffs.mean() - half, abs=1e-6)
