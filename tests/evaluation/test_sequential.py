"""Sequential Monte Carlo: the look schedule, the intervals against independent computations, the error
guarantee by simulation (fixed seed), and the stop point on real runs (the same for 1 and 2 workers)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from nft_deploy.evaluation import metrics as M
from nft_deploy.evaluation.check import Thresholds, check
from nft_deploy.evaluation.compare import compare
from nft_deploy.evaluation.results import to_json
from nft_deploy.evaluation.runner import evaluate
from nft_deploy.evaluation.sequential import (
    GateRule,
    Look,
    binomial_boundaries,
    fraction_below_at_most,
    look_interval,
    look_schedule,
    mean_at_least,
    proportion_interval,
    run_looks,
    spending,
)


def test_looks_double_from_the_first_and_end_at_the_maximum():
    assert look_schedule(200) == (16, 32, 64, 128, 200)
    assert look_schedule(20, first_look=5) == (5, 10, 20) and look_schedule(8) == (8,)


def test_mean_interval_is_the_projects_student_t_interval_at_95():
    v = np.random.default_rng(0).uniform(0.8, 0.95, 23)
    lo, hi = look_interval(v, 0.95)
    ref = M.accuracy_stats(v).ci95  # the hand-written t quantile in metrics: an independent computation
    assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)


@pytest.mark.parametrize("k, n", [(0, 20), (3, 20), (19, 20), (20, 20), (7, 100)])
def test_clopper_pearson_bounds_put_alpha_over_2_in_each_binomial_tail(k, n):
    lo, hi = proportion_interval(k, n, 0.9)

    def tail_at_least(p):  # P(X >= k), float64 from the binomial formula
        return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))

    assert lo == 0.0 if k == 0 else tail_at_least(lo) == pytest.approx(0.05, rel=1e-6)
    assert hi == 1.0 if k == n else 1 - tail_at_least(hi) + math.comb(n, k) * hi**k * (1 - hi) ** (n - k) == \
        pytest.approx(0.05, rel=1e-6)


def _simulate(criterion, draw, truth: str, runs: int = 600, chips_max: int = 200, alpha: float = 0.05):
    """Repeated sequential runs on chips drawn by ``draw(rng, n)``: (error rate of settled decisions,
    its simulation standard error, mean chips used)."""
    rng = np.random.default_rng(12345)
    wrong, used = 0, []
    for _ in range(runs):
        chips: list = []

        def step(ids, chips=chips):
            chips += [SimpleNamespace(accuracy=a) for a in draw(rng, len(ids))]

        rule = GateRule(lambda clean: [criterion], alpha).bind(None)
        out = run_looks(step, lambda chips=chips: chips, chips_max, 16, rule, alpha)
        decided = out.decisions.get(criterion.describe)
        wrong += decided is not None and decided != truth
        used.append(out.chips_used)
    rate = wrong / runs
    return rate, math.sqrt(max(rate, alpha) * (1 - rate) / runs), float(np.mean(used))


def _beta(mean: float, sd: float):
    k = mean * (1 - mean) / sd**2 - 1
    return lambda rng, n: rng.beta(mean * k, (1 - mean) * k, n)


MEAN_090 = mean_at_least("mean accuracy >= 0.9", 0.90, lambda c: c.accuracy)


@pytest.mark.parametrize("mean, truth, max_chips", [
    (0.95, "pass", 50),  # clear pass: settled at the first or second look, at least 4x fewer chips than 200
    (0.85, "fail", 50),  # clear fail
    (0.905, "pass", 200),  # borderline: the guarantee still holds for whatever it settles
    (0.90, "pass", 200),  # on the threshold: a false fail is likeliest here; unadjusted looks give 0.148
    (0.899, "fail", 200),  # just below: a false pass is likeliest here
])
def test_mean_rule_is_wrong_at_most_alpha_of_the_time_and_saves_chips_when_clear(mean, truth, max_chips):
    rate, se, used = _simulate(MEAN_090, _beta(mean, 0.03), truth)
    assert rate <= 0.05 + 3 * se, f"error rate {rate:.3f} (+- {se:.3f}) above alpha"
    assert used <= max_chips


# a percentile pass needs (1 - 0.05)^n <= 0.05, n >= 59 chips, even with no chip below: the 64-chip look
@pytest.mark.parametrize("mean, truth, max_chips", [
    (0.95, "pass", 66),  # 0.02% of chips below: passes at 64 (Bonferroni over 5 looks needed 128)
    (0.85, "fail", 17),  # 93% below: fails at the first look
    (0.914, "pass", 200),  # 4.5% below
    (0.88 + 1.645 * 0.02, "pass", 200),  # exactly 5% below: a false fail is likeliest
    (0.88 + 1.555 * 0.02, "fail", 200),  # 6% of chips below: a false pass is likeliest
])
def test_percentile_rule_is_wrong_at_most_alpha_of_the_time(mean, truth, max_chips):
    # chips ~ Normal(mean, 0.02 ** 2); their 5th percentile is mean - 1.645 * 0.02 (0.914 -> 0.881)
    rule = fraction_below_at_most("5th percentile >= 0.88", 0.88, 0.05)
    rate, se, used = _simulate(rule, lambda rng, n: rng.normal(mean, 0.02, n), truth)
    assert rate <= 0.05 + 3 * se and used <= max_chips, (rate, se, used)


def _ever_crosses_by_enumeration(looks, q, bounds, side, upto=None):
    """P(the count of chips below ever crosses ``bounds`` within the first ``upto`` looks | fraction q), by
    summing over every sequence of binomial increments (pure Python, math.comb): independent of the
    module's dynamic programming."""
    upto = len(looks) if upto is None else upto

    def pmf(j, m):
        return math.comb(m, j) * q**j * (1 - q) ** (m - j)

    def walk(k, count, prob):
        if k == upto:
            return 0.0
        m = looks[k] - (looks[k - 1] if k else 0)
        total = 0.0
        for j in range(m + 1):
            c, pr = count + j, prob * pmf(j, m)
            crossed = c <= bounds[k] if side == "pass" else c >= bounds[k]
            total += pr if crossed else walk(k + 1, c, pr)
        return total

    return walk(0, 0, 1.0)


@pytest.mark.parametrize("looks, q, alpha", [((8, 16, 32, 50), 0.1, 0.05), ((8, 16, 32, 50), 0.05, 0.05),
                                             ((5, 10, 20, 40), 0.2, 0.01), ((16, 32, 60), 0.05, 0.1)])
def test_exact_boundaries_cross_at_most_alpha_at_fraction_q_and_are_as_loose_as_the_spending_allows(looks, q, alpha):
    b = binomial_boundaries(looks, q, alpha)
    for side, bounds, spent in (("pass", b.pass_at, b.pass_spent), ("fail", b.fail_at, b.fail_spent)):
        for k, n in enumerate(looks):
            exact = _ever_crosses_by_enumeration(looks, q, bounds, side, upto=k + 1)
            assert spent[k] == pytest.approx(exact, rel=1e-9, abs=1e-15)
            assert exact <= spending(n / looks[-1], alpha) * (1 + 1e-12) and exact <= alpha
            # one count looser at look k would overspend there: each boundary is the loosest allowed
            looser = list(bounds)
            looser[k] += 1 if side == "pass" else -1
            assert _ever_crosses_by_enumeration(looks, q, looser, side, upto=k + 1) > spending(n / looks[-1], alpha)


def test_exact_boundaries_agree_with_a_monte_carlo_of_the_default_schedule():
    looks, q = look_schedule(200), 0.05
    b = binomial_boundaries(looks, q, 0.05)
    assert b.pass_at == (-1, -1, 0, 1, 3) and b.fail_at == (4, 5, 8, 13, 18)
    runs = 400_000  # fixed seed; tolerance: 4 standard errors of the simulated frequency (about 1.3e-3)
    counts = np.random.default_rng(2024).binomial(np.diff((0, *looks)), q, (runs, len(looks))).cumsum(axis=1)
    for freq, exact in ((np.any(counts <= np.array(b.pass_at), axis=1).mean(), b.pass_spent[-1]),
                        (np.any(counts >= np.array(b.fail_at), axis=1).mean(), b.fail_spent[-1])):
        assert exact <= 0.05
        assert abs(freq - exact) <= 4 * math.sqrt(exact * (1 - exact) / runs), (freq, exact)


@pytest.mark.parametrize("q, alpha", [(0.05, 0.05), (0.05, 0.01), (0.1, 0.05), (0.01, 0.05), (0.2, 0.025)])
def test_no_look_before_ln_alpha_over_ln_1_minus_q_chips_can_pass(q, alpha):
    """The bound no valid test beats: with zero chips below, a pass at n chips is wrong at fraction q with
    probability (1 - q)^n, so n >= ln(alpha) / ln(1 - q) (59 chips for q = alpha = 0.05)."""
    looks = look_schedule(2000)
    b = binomial_boundaries(looks, q, alpha)
    bound = math.log(alpha) / math.log(1 - q)
    assert all(a < 0 for n, a in zip(looks, b.pass_at, strict=True) if n < bound)
    first = next(n for n, a in zip(looks, b.pass_at, strict=True) if a >= 0)
    # it passes at the first look where zero below fits the spending, computed here from the formula
    assert first == next(n for n in looks if (1 - q) ** n <= spending(n / looks[-1], alpha))


def test_a_run_with_no_chip_below_passes_at_the_first_look_the_boundaries_allow():
    rule = fraction_below_at_most("5th percentile >= 0.88", 0.88, 0.05)
    draw = lambda rng, n: np.full(n, 0.95)  # noqa: E731
    assert _simulate(rule, draw, "pass", runs=3)[2] == 64  # 200 / 64 = 3.1x fewer than a fixed 200
    b = binomial_boundaries(look_schedule(200), 0.05, 0.05)
    assert look_schedule(200)[next(k for k, a in enumerate(b.pass_at) if a >= 0)] == 64
    # with C = 2 criteria each has alpha 0.025: zero below needs n >= ln(0.025) / ln(0.95) = 72, the 128 look
    assert binomial_boundaries(look_schedule(200), 0.05, 0.025).pass_at[:4] == (-1, -1, -1, 1)


@pytest.mark.parametrize("p, truth", [(0.05, "pass"), (0.065, "fail"), (0.0, "pass"), (0.2, "fail")])
def test_percentile_error_rate_on_a_bernoulli_truth_matches_the_exact_crossing_probability(p, truth):
    """Chips below with probability exactly p: at p = q the false-fail rate is at most the exact fail-side
    crossing probability (the pass boundary can only stop runs earlier), and it is <= alpha."""
    rule = fraction_below_at_most("5th percentile >= 0.9", 0.9, 0.05)
    draw = lambda rng, n: np.where(rng.random(n) < p, 0.5, 0.95)  # noqa: E731
    rate, se, used = _simulate(rule, draw, truth, runs=2000)
    b = binomial_boundaries(look_schedule(200), 0.05, 0.05)
    assert rate <= 0.05 + 3 * se
    if p == 0.05:
        assert rate <= b.fail_spent[-1] + 3 * se
    if p == 0.0:
        assert used == 64
    if p == 0.2:
        assert used < 50  # a clear fail: 4x fewer chips than 200


def test_accuracies_that_move_in_steps_do_not_settle_on_a_look_where_every_chip_scores_the_same():
    """90% of chips perfect, 10% at 0.9: mean 0.99 < 0.995. Sixteen perfect chips (p = 0.185) once settled a
    false pass through a zero-width t-interval."""
    steps = lambda rng, n: np.where(rng.random(n) < 0.9, 1.0, 0.9)  # noqa: E731
    rate, se, _ = _simulate(mean_at_least("mean accuracy >= 0.995", 0.995, lambda c: c.accuracy), steps, "fail")
    assert rate <= 0.05 + 3 * se
    assert look_interval([0.97] * 16, 0.95) == (-np.inf, np.inf)


def test_the_100th_percentile_passes_once_some_chip_reaches_it_and_never_fails():
    best = fraction_below_at_most("100th percentile >= 0.9", 0.9, 1.0)
    chips = [SimpleNamespace(accuracy=a) for a in (0.5, 0.6)]
    assert best.settle(chips, Look((2, 3), 0.01)) is None
    assert best.settle([*chips, SimpleNamespace(accuracy=0.95)], Look((2, 3), 0.01)) == "pass"


def test_five_criteria_on_their_thresholds_are_wrong_together_at_most_alpha():
    """Five independent criteria exactly on their thresholds (truth: pass): a false fail of any one fails
    the verdict, so each gets alpha / 5 (with alpha each, the verdict is wrong far more often than alpha)."""
    rng = np.random.default_rng(7)
    draw = _beta(0.90, 0.03)
    names = ("a", "b", "c", "d", "e")
    criteria = [mean_at_least(f"{n} >= 0.9", 0.90, lambda c, n=n: getattr(c, n)) for n in names]
    runs, wrong = 1000, 0
    for _ in range(runs):
        chips: list = []

        def step(ids, chips=chips):
            cols = [draw(rng, len(ids)) for _ in names]
            chips += [SimpleNamespace(**dict(zip(names, vals, strict=True))) for vals in zip(*cols, strict=True)]

        out = run_looks(step, lambda chips=chips: chips, 200, 16, GateRule(lambda clean: criteria, 0.05).bind(None),
                        0.05)
        wrong += "fail" in out.decisions.values()
    assert wrong / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs), wrong / runs


def test_stop_point_and_json_are_the_same_for_one_and_two_workers(tiny_cnn):
    path, data = tiny_cnn
    runs = [evaluate(path, data, chips=64, ci_width=0.3, first_look=4, workers=w, threads=1, quiet=True)
            for w in (1, 2)]
    assert runs[0].chips < 64 and runs[0].chips_max == 64 and runs[0].stop_reason.startswith("settled")
    assert to_json(runs[0]) == to_json(runs[1])
    assert [c.chip for c in runs[0].per_chip] == list(range(runs[0].chips))  # a prefix of the fixed order
    fixed = evaluate(path, data, chips=runs[0].chips, workers=1, quiet=True)
    assert [c.accuracy for c in fixed.per_chip] == [c.accuracy for c in runs[0].per_chip]


def test_check_stops_early_on_a_clear_verdict_and_runs_every_chip_when_fixed(tiny_cnn):
    path, data = tiny_cnn
    easy = check(path, data, Thresholds(min_accuracy=0.0, max_drop=0.9), chips=64, first_look=8, quiet=True)
    assert easy.passed and easy.evaluation.chips == 8
    assert easy.evaluation.stop_reason == ("settled: mean accuracy >= 0, drop from clean <= 0.9 at alpha 0.05 "
                                           "after 8 chips")
    pct = check(path, data, Thresholds(min_accuracy=0.0, percentile=5), chips=200, first_look=8, quiet=True)
    assert pct.passed and pct.evaluation.chips == 64  # the first look with 0.95^n <= 0.05 (n / 200)^0.25
    assert pct.evaluation.stop_reason == "settled: 5th percentile >= 0 at alpha 0.05 after 64 chips"
    hard = check(path, data, Thresholds(min_accuracy=1.0), chips=64, first_look=8, quiet=True)
    assert not hard.passed and hard.evaluation.chips == 8 and "fails" in hard.evaluation.stop_reason
    full = check(path, data, Thresholds(min_accuracy=0.0), chips=16, sequential=False, quiet=True)
    assert full.evaluation.chips == 16 and full.evaluation.stop_reason == "fixed: 16 chips"
    assert "CHIPS  | 16 of at most 16 | fixed: 16 chips" in full.text()


def test_compare_with_ci_width_stops_every_model_at_the_same_chip(tiny_cnn, helpers):
    path, data = tiny_cnn
    other = path.with_name("b.cim.onnx")
    import onnx

    onnx.save(helpers.deploy(helpers.conv(1), "nft_reference"), other)
    r = compare([path, other], data, chips=64, ci_width=0.5, first_look=4, workers=1, quiet=True)
    assert r.results[0].chips == r.results[1].chips < 64
    assert r.to_dict()["chips_used"] == r.results[0].chips and r.to_dict()["stop_reason"].startswith("settled")
