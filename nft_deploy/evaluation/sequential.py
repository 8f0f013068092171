"""Sequential Monte Carlo: stop adding chips once the answer is settled.

Chips run in a fixed order, in a fixed schedule of looks: ``first_look`` chips, then doubling (16, 32,
64, 128, ..., ``--chips``). After each look a stopping rule reads every chip so far. Because the schedule
and the chip order are fixed, the stop point (and the JSON) is the same for any number of workers and
for either backend.

The error guarantee holds although the chips are looked at repeatedly. A gate decision can be wrong in
one direction only for a given truth, and C criteria share alpha (alpha / C each), so the whole verdict
is wrong with probability at most alpha. Within a criterion:

- Mean criteria (mean accuracy, drop from clean, mean confidence): with K looks every one-sided bound is
  taken at alpha / (K C) (Bonferroni over a fixed look schedule: the chance that any look's bound misses
  the truth is at most alpha / C, whichever look the run stops at; Jennison & Turnbull, *Group Sequential
  Methods with Applications to Clinical Trials*, 2000, ch. 2; the doubling schedule keeps K near
  log2(chips / first_look) + 1). Student-t intervals (per-chip accuracies are bounded, so the t-interval
  is the usual large-sample one; the simulation test checks its error rate). A look whose chips all score
  the same settles no mean (the t-interval would have zero width).
- Percentile criteria ("the q-th percentile >= m", i.e. "at most a fraction q of chips below m"): an
  exact group-sequential binomial test over the look schedule (Jennison & Turnbull 2000, ch. 12, exact
  calculations for binary data, with the error-spending boundaries of ch. 7: Lan & DeMets 1983, in the
  power family alpha t^rho of Kim & DeMets 1987 with rho = ``SPENDING_RHO``, t = chips / --chips). The
  number of chips below m after each look is a binomial random walk; exact dynamic programming over the
  binomial increments between looks gives, once per (schedule, q, alpha / C), the largest count that
  passes and the smallest that fails at each look such that, at a true fraction q, the chance of ever
  crossing either boundary is at most alpha / C (``binomial_boundaries``). Each boundary is computed
  without the other (non-binding), so the guarantee holds whichever criterion stops the run.

The price of a percentile gate, and a bound no valid test beats: "at most a fraction q of chips below m"
cannot be called a pass before even zero chips below is unlikely at a true fraction q, i.e. before
(1 - q)^n <= alpha / C, n >= ln(alpha / C) / ln(1 - q): 59 chips for the 5th percentile at alpha 0.05 (so at
most 200 / 59 = 3.4x fewer than a fixed 200 chips); the doubling schedule passes at its 64-chip look
(0.95^64 = 0.0375 <= 0.05 (64 / 200)^0.25 = 0.0376). Mean and drop gates and clear percentile fails
settle far sooner. A ``--ci-width`` target decides nothing and uses the plain 95% interval. A run that
reaches ``--chips`` unsettled says so; its decision then is the point estimate's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from nft_deploy.evaluation import metrics as M
from nft_deploy.evaluation.group_sequential import (  # noqa: F401  - part of this module's API
    SPENDING_RHO,
    Boundaries,
    binomial_boundaries,
    spending,
)

FIRST_LOOK = 16
"""Chips at the first look; each later look doubles the count, the last is ``--chips``."""


def look_schedule(chips_max: int, first_look: int = FIRST_LOOK) -> tuple[int, ...]:
    """Cumulative chip counts at which the rule looks: first_look, 2 first_look, ..., chips_max."""
    looks, n = [], max(1, first_look)
    while n < chips_max:
        looks.append(n)
        n *= 2
    return (*looks, chips_max)


def look_interval(values: Sequence[float], level: float) -> tuple[float, float]:
    """The Student-t interval of the mean (``metrics.mean_interval``) as a look reads it: infinite with fewer
    than two values or when every value is the same (a zero-width interval from accuracies that move in steps
    would settle on no evidence of the spread: such a look waits for the next)."""
    v = np.asarray(values, np.float64)
    if len(v) < 2 or np.all(v == v[0]):
        return -np.inf, np.inf
    ci = M.mean_interval(v, level)
    return ci.low, ci.high


def proportion_interval(k: int, n: int, level: float) -> tuple[float, float]:
    """Clopper-Pearson interval of a binomial proportion k / n at ``level``."""
    a = 1 - level
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


class Level(float):
    """The Bonferroni interval level 1 - alpha / K of a look (a float, as every rule reads it) that also
    carries the look schedule and alpha, for rules that spend alpha exactly over the looks."""

    looks: tuple[int, ...]
    alpha: float

    def __new__(cls, alpha: float, looks: Sequence[int]) -> Level:
        self = super().__new__(cls, 1 - alpha / len(looks))
        self.looks, self.alpha = tuple(int(n) for n in looks), float(alpha)
        return self


@dataclass(frozen=True)
class Look:
    """What a criterion is told at a look: the schedule and its own share of alpha (alpha / C)."""

    looks: tuple[int, ...]
    alpha: float

    def index(self, n: int) -> int:
        if n not in self.looks:
            raise ValueError(f"{n} chips is not a look of the schedule {self.looks}: the boundaries hold at "
                             "the scheduled looks only")
        return self.looks.index(n)


@dataclass(frozen=True)
class Criterion:
    """One gate criterion in sequential form: ``settle`` says "pass", "fail" or None (not yet)."""

    describe: str
    """How the stop reason names it, e.g. ``5th percentile >= 0.90``."""
    settle: Callable[[Sequence, Look], str | None]
    """(per-chip metrics so far, the look) -> "pass" | "fail" | None."""


def mean_at_least(describe: str, threshold: float, value: Callable) -> Criterion:
    """Mean over chips of ``value(chip)`` >= threshold: one-sided t bounds at alpha / (K C) (Bonferroni)."""
    def settle(chips, look):
        lo, hi = look_interval([value(c) for c in chips], 1 - 2 * look.alpha / len(look.looks))
        return "pass" if lo >= threshold else "fail" if hi < threshold else None

    return Criterion(describe, settle)


def fraction_below_at_most(describe: str, threshold: float, fraction: float) -> Criterion:
    """At most ``fraction`` of chips have accuracy below ``threshold`` (a percentile criterion), by the
    exact group-sequential binomial test (``binomial_boundaries``). At ``fraction`` 1 (the 100th
    percentile, the best chip) that is "some chip reaches it": certain once one does, never settled as a
    fail."""
    def settle(chips, look):
        below = sum(c.accuracy < threshold for c in chips)
        if fraction >= 1:
            return "pass" if below < len(chips) else None
        k = look.index(len(chips))
        b = binomial_boundaries(look.looks, float(fraction), look.alpha)
        return "pass" if below <= b.pass_at[k] else "fail" if below >= b.fail_at[k] else None

    return Criterion(describe, settle)


@dataclass
class Outcome:
    """How a sequential run ended."""

    chips_used: int
    chips_max: int
    stop_reason: str
    decisions: dict[str, str]
    """Criterion description -> "pass" | "fail" for those settled (gates only)."""


def run_looks(step: Callable[[list[int]], None], chips_so_far: Callable[[], list], chips_max: int,
              first_look: int, rule: Callable[[list, float, int], tuple[str | None, dict]] | None,
              alpha: float) -> Outcome:
    """Run chips look by look through ``step(chip_ids)`` until ``rule`` settles or ``chips_max`` is reached.

    ``rule(chips, level, n)`` returns (a stop reason or None, the decisions so far); ``level`` is the
    Bonferroni level 1 - alpha / K, a ``Level`` that also carries the schedule and alpha. Without a rule
    every chip runs in one look (the fixed Monte Carlo)."""
    looks = look_schedule(chips_max, first_look) if rule is not None else (chips_max,)
    level, done, decisions = Level(alpha, looks), 0, {}
    for n in looks:
        step(list(range(done, n)))
        done = n
        if rule is None:
            return Outcome(n, chips_max, f"fixed: {n} chips", {})
        reason, decisions = rule(chips_so_far(), level, n)
        if reason is not None:
            return Outcome(n, chips_max, reason, decisions)
    if getattr(rule, "precision", False):
        return Outcome(done, chips_max, f"--chips {done} reached before the interval was --ci-width narrow", {})
    return Outcome(done, chips_max, f"not settled at alpha {alpha:g} after {done} chips (--chips): the decision "
                                    "is the point estimate's", decisions)


WIDTH_LEVEL = 0.95
"""A precision target decides nothing, so its interval needs no spending over the looks: the 95% one."""


def ci_width_rule(width: float, value: Callable = lambda c: c.accuracy, what: str = "mean accuracy"):
    """Stop once the 95% interval of the mean of ``value`` over chips is narrower than ``width``."""
    def rule(chips, level, n):
        lo, hi = look_interval([value(c) for c in chips], WIDTH_LEVEL)
        if hi - lo < width:
            return f"settled: the 95% interval of the {what} is {hi - lo:.4f} wide (< --ci-width {width:g}) after {n} chips", {}
        return None, {}

    rule.precision = True
    return rule


def paired_width_rule(width: float):
    """compare: stop once the interval of every model's paired accuracy difference against the first model
    is narrower than ``width`` (differences chip by chip, so the shared chip-to-chip spread cancels)."""
    def rule(per_model, level, n):
        base = [c.accuracy for c in per_model[0]]
        widths = []
        for chips in per_model[1:]:
            lo, hi = look_interval([c.accuracy - b for c, b in zip(chips, base, strict=True)], WIDTH_LEVEL)
            widths.append(hi - lo)
        if max(widths) < width:
            return (f"settled: the 95% intervals of the paired accuracy differences are at most "
                    f"{max(widths):.4f} wide (< --ci-width {width:g}) after {n} chips"), {}
        return None, {}

    rule.paired = rule.precision = True
    return rule


class GateRule:
    """Stop once a gate's verdict is settled: every criterion settled pass, or any settled fail.

    ``criteria(clean)`` builds the criteria once the clean pass is known (a drop criterion needs it);
    ``decisions`` keeps the last look's settled criteria for the report."""

    needs_clean = True

    def __init__(self, criteria: Callable[[Any], Sequence[Criterion]], alpha: float):
        self.make, self.alpha, self.criteria, self.decisions = criteria, alpha, (), {}

    def bind(self, clean) -> GateRule:
        self.criteria = tuple(self.make(clean))
        return self

    def __call__(self, chips, level, n):
        # for a given truth only one direction can be wrong (a wrong "pass" needs the bound on the passing
        # side to miss), so each criterion gets alpha / C for each direction: the verdict over C criteria is
        # then wrong with probability at most alpha
        if not isinstance(level, Level):
            raise TypeError("GateRule needs the look schedule: run it through run_looks (level is a Level)")
        look = Look(level.looks, level.alpha / max(1, len(self.criteria)))
        self.decisions = {c.describe: d for c in self.criteria if (d := c.settle(chips, look)) is not None}
        failed = [k for k, d in self.decisions.items() if d == "fail"]
        if failed:
            return f"settled: {failed[0]} fails at alpha {self.alpha:g} after {n} chips", self.decisions
        if len(self.decisions) == len(self.criteria):
            return f"settled: {', '.join(self.decisions)} at alpha {self.alpha:g} after {n} chips", self.decisions
        return None, self.decisions


__all__ = ["FIRST_LOOK", "SPENDING_RHO", "Boundaries", "Criterion", "GateRule", "Level", "Look", "Outcome",
           "binomial_boundaries", "ci_width_rule", "fraction_below_at_most", "look_schedule", "mean_at_least",
           "look_interval", "paired_width_rule", "proportion_interval", "run_looks", "spending"]
