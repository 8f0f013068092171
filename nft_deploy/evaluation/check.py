"""The CI robustness gate: thresholds on a Monte Carlo result -> PASSED/FAILED lines and JUnit XML.

Lines read ``PASSED | subject | value >= threshold (--flag)``; a failing line is followed by a
``Note:`` that names the flag to change. ``check`` exits 0 only when every line passes.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nft_deploy.checkpoint import atomic_write
from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.results import CleanMetrics, EvaluationResult
from nft_deploy.evaluation.runner import (
    TORCH_EVALUATE_ONLY,
    EvalConfig,
    make_config,
    resolve_data,
    run_monte_carlo,
    with_preprocessing,
)
from nft_deploy.evaluation.sequential import Criterion, GateRule, fraction_below_at_most, mean_at_least


@dataclass(frozen=True)
class Thresholds:
    """What a model must reach to pass; None: not checked."""

    min_accuracy: float | None = None
    """Minimum accuracy: of the mean over chips, or of the ``percentile``-th chip when that is set."""
    percentile: float | None = None
    """Apply ``min_accuracy`` to this percentile of per-chip accuracy (5: 95% of chips must reach it)."""
    max_drop: float | None = None
    """Maximum clean accuracy minus mean accuracy over chips."""
    min_confidence: float | None = None
    """Minimum mean confidence (max softmax) over chips and samples."""

    def __post_init__(self):
        for flag, v, hi in (("--min-accuracy", self.min_accuracy, 1), ("--max-drop", self.max_drop, 1),
                            ("--min-confidence", self.min_confidence, 1), ("--percentile", self.percentile, 100)):
            if v is not None and not (0 <= v <= hi):
                raise EvaluationError(f"{flag}: must be in [0, {hi}], got {v}")
        if self.percentile is not None and self.min_accuracy is None:
            raise EvaluationError("--percentile: applies to --min-accuracy, which is not given")
        if self.min_accuracy is None and self.max_drop is None and self.min_confidence is None:
            raise EvaluationError("check: no threshold given; pass --min-accuracy, --max-drop and/or --min-confidence")


@dataclass(frozen=True)
class CheckLine:
    """One threshold against one number."""

    name: str
    subject: str
    value: float
    op: str
    """``>=`` or ``<=``: how value must compare with threshold."""
    threshold: float
    flag: str
    passed: bool

    def text(self) -> str:
        return (f"{'PASSED' if self.passed else 'FAILED'} | {self.subject} | "
                f"{self.value:.4f} {self.op if self.passed else _negate(self.op)} {self.threshold:.4f} ({self.flag})")

    def note(self) -> str:
        direction = "lower" if self.op == ">=" else "raise"
        return (f"Note: {self.subject} is {self.value:.4f}; to accept it, {direction} {self.flag} "
                f"(now {self.threshold:g}), or make the model more robust")


@dataclass(frozen=True)
class CheckResult:
    """All lines of one gate; ``passed`` when every line passes."""

    evaluation: EvaluationResult
    lines: list[CheckLine] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(line.passed for line in self.lines)

    def text(self) -> str:
        ev = self.evaluation
        out = [f"CHIPS  | {ev.chips} of at most {ev.chips_max} | {ev.stop_reason}"]
        for line in self.lines:
            out.append(line.text())
            if not line.passed:
                out.append(line.note())
        return "\n".join(out)


def _negate(op: str) -> str:
    return "<" if op == ">=" else ">"


def criteria(t: Thresholds, clean: CleanMetrics) -> list[Criterion]:
    """The thresholds as sequential criteria (``sequential``), named as the stop reason prints them."""
    out = []
    if t.min_accuracy is not None and t.percentile is None:
        out.append(mean_at_least(f"mean accuracy >= {t.min_accuracy:g}", t.min_accuracy, lambda c: c.accuracy))
    elif t.min_accuracy is not None:  # the p-th percentile >= m  <=>  at most p% of chips fall below m
        out.append(fraction_below_at_most(f"{_ordinal(t.percentile)} percentile >= {t.min_accuracy:g}",
                                          t.min_accuracy, t.percentile / 100))
    if t.max_drop is not None:
        out.append(mean_at_least(f"drop from clean <= {t.max_drop:g}", clean.accuracy - t.max_drop,
                                 lambda c: c.accuracy))
    if t.min_confidence is not None:
        out.append(mean_at_least(f"mean confidence >= {t.min_confidence:g}", t.min_confidence,
                                 lambda c: c.confidence))
    return out


def _ordinal(p: float) -> str:
    n = f"{p:g}"
    suffix = "th" if n.endswith(("11", "12", "13")) else {"1": "st", "2": "nd", "3": "rd"}.get(n[-1], "th")
    return n + suffix


def apply_thresholds(result: EvaluationResult, t: Thresholds, settled: dict[str, str] | None = None) -> CheckResult:
    """Compare an evaluation with thresholds (no new Monte Carlo). ``settled`` (criterion -> "pass" or
    "fail", from a sequential run) decides the lines it names; the others compare point estimates."""
    lines, n = [], result.chips
    if t.min_accuracy is not None:
        accs = [c.accuracy for c in result.per_chip]
        if t.percentile is None:
            value, subject = result.accuracy.mean, f"accuracy (mean over {n} chips)"
        else:
            value, subject = float(np.percentile(accs, t.percentile)), f"accuracy ({t.percentile:g}th percentile of {n} chips)"
        lines.append(CheckLine("min_accuracy", subject, value, ">=", t.min_accuracy,
                               "--min-accuracy", value >= t.min_accuracy))
    if t.max_drop is not None:
        lines.append(CheckLine("max_drop", f"accuracy drop (clean {result.clean.accuracy:.4f} - mean)",
                               result.accuracy_drop, "<=", t.max_drop, "--max-drop", result.accuracy_drop <= t.max_drop))
    if t.min_confidence is not None:
        lines.append(CheckLine("min_confidence", f"confidence (mean max softmax over {n} chips)", result.confidence,
                               ">=", t.min_confidence, "--min-confidence", result.confidence >= t.min_confidence))
    if settled:
        names = [c.describe for c in criteria(t, result.clean)]
        lines = [dataclasses.replace(line, passed=settled[name] == "pass") if name in settled else line
                 for line, name in zip(lines, names, strict=True)]
    return CheckResult(evaluation=result, lines=lines)


def check(model, data, thresholds: Thresholds, config: EvalConfig | None = None, *, profile=None,
          sequential: bool = True, **overrides) -> CheckResult:
    """Evaluate ``model`` on ``data`` and gate it on ``thresholds``.

    ``sequential`` (the default) adds chips look by look and stops once the verdict is settled at
    ``config.alpha`` (``nft_deploy.evaluation.sequential``); False runs every chip of ``config.chips``."""
    config = make_config(config, overrides)
    if config.engine == "torch":
        raise EvaluationError(TORCH_EVALUATE_ONLY)
    deployed = load_deployed(model, profile)
    d = resolve_data(data, config, deployed)
    gate = GateRule(lambda clean: criteria(thresholds, clean), config.alpha) if sequential else None
    result = with_preprocessing(run_monte_carlo(deployed, d.x, d.y, config, data_name=d.name, rule=gate), d)
    return apply_thresholds(result, thresholds, gate.decisions if gate else None)


def junit_xml(result: CheckResult) -> str:
    """JUnit XML: one testsuite ``nft-deploy.check``, one testcase per threshold, a failure per FAILED line."""
    failures = sum(not line.passed for line in result.lines)
    suite = ET.Element("testsuite", name="nft-deploy.check", tests=str(len(result.lines)),
                       failures=str(failures), errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    ev = result.evaluation
    for k, v in (("model", ev.model), ("data", ev.data), ("chips", ev.chips), ("chips_max", ev.chips_max),
                 ("stop_reason", ev.stop_reason), ("seed", ev.seed), ("profile", ev.profile), ("sigma", ev.sigma)):
        ET.SubElement(props, "property", name=k, value=str(v))
    for line in result.lines:
        case = ET.SubElement(suite, "testcase", classname=f"nft-deploy.check.{_safe(ev.model)}", name=line.name)
        if not line.passed:
            fail = ET.SubElement(case, "failure", message=line.text(), type="threshold")
            fail.text = line.note()
        ET.SubElement(case, "system-out").text = line.text()
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_junit(result: CheckResult, path: str | Path) -> Path:
    text = junit_xml(result)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return Path(path)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in Path(name).name) or "model"


__all__ = ["CheckLine", "CheckResult", "Thresholds", "apply_thresholds", "check", "junit_xml", "write_junit"]
