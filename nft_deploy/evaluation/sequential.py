"""Sequential Monte Carlo: stop adding chips once the answer is settled.

Chips run in a fixed order, in a fixed schedule of looks: ``first_look`` chips, then doubling (16, 32,
64, 128, ..., ``--chips``). After each look a stopping rule reads every chip so far. Because the schedule
and the chip order are fixed, the stop point (and the JSON) is the same for any number of workers and
for either backend.

The error guarantee holds although the chips are looked at repeatedly: with K looks, every interval is
taken at level ``1 - alpha / K`` (Bonferroni over a fixed look schedule: the chance that any look's
interval misses the truth is at most alpha, whichever look the run stops at), so a decision that a
rule calls settled is wrong with probability at most alpha (Jennison & Turnbull, *Group Sequential
Methods with Applications to Clinical Trials*, 2000, ch. 2; the doubling schedule keeps K near
log2(chips / first_look) + 1). For a given truth a gate decision can be wrong in one direction only, so
gates use one-sided bounds at alpha / (K C) over C criteria: the whole verdict is wrong with probability at
most alpha. A ``--ci-width`` target decides nothing and uses the plain 95% interval.

The price of a percentile gate: "at most 5% of chips below m" can be called a pass only once even zero
chips below gives an upper bound under 5%, which takes n >= ln(alpha / K) / ln(0.95), about 90 chips at
alpha 0.05 over 5 looks. Mean and drop gates and every clear fail settle far sooner. Intervals: Student-t for a mean over chips (per-chip accuracies are
bounded, so the t-interval is the usual large-sample one; the simulation test checks its error rate), and
Clopper-Pearson (exact) for the fraction of chips below a threshold, which decides a percentile
criterion. A look whose chips all score the same settles no mean (the t-interval would have zero width). A run that reaches ``--chips`` unsettled says so; its decision then is the point estimate's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

FIRST_LOOK = 16
"""Chips at the first look; each later look doubles the count, the last is ``--chips``."""


def look_schedule(chips_max: int, first_look: int = FIRST_LOOK) -> tuple[int, ...]:
    """Cumulative chip counts at which the rule looks: first_look, 2 first_look, ..., chips_max."""
    looks, n = [], max(1, first_look)
    while n < chips_max:
        looks.append(n)
        n *= 2
    return (*looks, chips_max)


def mean_interval(values: Sequence[float], level: float) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean at ``level``; infinite with fewer than two values or when
    every value is the same (a zero-width interval from accuracies that move in steps would settle on no
    evidence of the spread: such a look waits for the next)."""
    v = np.asarray(values, np.float64)
    if len(v) < 2 or np.all(v == v[0]):
        return -np.inf, np.inf
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def proportion_interval(k: int, n: int, level: float) -> tuple[float, float]:
    """Clopper-Pearson interval of a binomial proportion k / n at ``level``."""
    a = 1 - level
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


@dataclass(frozen=True)
class Criterion:
    """One gate criterion in sequential form: ``settle`` says "pass", "fail" or None (not yet)."""

    describe: str
    """How the stop reason names it, e.g. ``5th percentile >= 0.90``."""
    settle: Callable[[Sequence, float], str | None]
    """(per-chip metrics so far, interval level) -> "pass" | "fail" | None."""


def mean_at_least(describe: str, threshold: float, value: Callable) -> Criterion:
    """Mean over chips of ``value(chip)`` >= threshold."""
    def settle(chips, level):
        lo, hi = mean_interval([value(c) for c in chips], level)
        return "pass" if lo >= threshold else "fail" if hi < threshold else None

    return Criterion(describe, settle)


def fraction_below_at_most(describe: str, threshold: float, fraction: float) -> Criterion:
    """At most ``fraction`` of chips have accuracy below ``threshold`` (a percentile criterion). At
    ``fraction`` 1 (the 100th percentile, the best chip) that is "some chip reaches it": certain once one
    does, never settled as a fail."""
    def settle(chips, level):
        below = sum(c.accuracy < threshold for c in chips)
        if fraction >= 1:
            return "pass" if below < len(chips) else None
        lo, hi = proportion_interval(below, len(chips), level)
        return "pass" if hi <= fraction else "fail" if lo > fraction else None

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

    ``rule(chips, level, n)`` returns (a stop reason or None, the decisions so far); without a rule every
    chip runs in one look (the fixed Monte Carlo)."""
    looks = look_schedule(chips_max, first_look) if rule is not None else (chips_max,)
    level, done, decisions = 1 - alpha / len(looks), 0, {}
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
        lo, hi = mean_interval([value(c) for c in chips], WIDTH_LEVEL)
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
            lo, hi = mean_interval([c.accuracy - b for c, b in zip(chips, base, strict=True)], WIDTH_LEVEL)
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
        # side to miss), so one-sided bounds at alpha / (K C) each, i.e. two-sided at 1 - 2 alpha / (K C):
        # the verdict over C criteria is then wrong with probability at most alpha
        one_sided = 1 - 2 * (1 - level) / max(1, len(self.criteria))
        self.decisions = {c.describe: d for c in self.criteria if (d := c.settle(chips, one_sided)) is not None}
        failed = [k for k, d in self.decisions.items() if d == "fail"]
        if failed:
            return f"settled: {failed[0]} fails at alpha {self.alpha:g} after {n} chips", self.decisions
        if len(self.decisions) == len(self.criteria):
            return f"settled: {', '.join(self.decisions)} at alpha {self.alpha:g} after {n} chips", self.decisions
        return None, self.decisions


__all__ = ["FIRST_LOOK", "Criterion", "GateRule", "Outcome", "ci_width_rule", "fraction_below_at_most",
           "look_schedule", "mean_at_least", "mean_interval", "paired_width_rule", "proportion_interval",
           "run_looks"]
