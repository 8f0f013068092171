"""Thresholds -> PASSED/FAILED lines, the JUnit file, and the pytest helper assert_robust."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation.check import Thresholds, apply_thresholds, junit_xml
from nft_deploy.evaluation.runner import evaluate
from nft_deploy.testing import assert_robust


@pytest.fixture
def result(tiny_cnn):
    path, data = tiny_cnn
    return evaluate(path, data, chips=6, quiet=True)


def test_percentile_threshold_uses_that_percentile_of_chips(result):
    accs = [c.accuracy for c in result.per_chip]
    p10 = float(np.percentile(accs, 10))
    just_below, just_above = apply_thresholds(result, Thresholds(min_accuracy=p10 + 1e-9, percentile=10)), \
        apply_thresholds(result, Thresholds(min_accuracy=p10, percentile=10))
    assert not just_below.passed and just_above.passed
    assert just_above.lines[0].value == pytest.approx(p10)


def test_drop_and_confidence_lines_compare_the_right_numbers(result):
    c = apply_thresholds(result, Thresholds(max_drop=max(result.accuracy_drop, 0.0), min_confidence=result.confidence + 0.01))
    drop, conf = c.lines
    assert drop.passed and drop.value == result.accuracy_drop and drop.op == "<="
    assert not conf.passed and conf.value == result.confidence
    assert "Note:" in c.text() and "--min-confidence" in c.text().splitlines()[-1]


def test_junit_has_one_testcase_per_threshold_and_a_failure_per_failed_line(result):
    c = apply_thresholds(result, Thresholds(min_accuracy=1.0, max_drop=1.0, min_confidence=0.0))
    suite = ET.fromstring(junit_xml(c))
    cases = suite.findall("testcase")
    assert [k.get("name") for k in cases] == ["min_accuracy", "max_drop", "min_confidence"]
    assert [k.find("failure") is not None for k in cases] == [True, False, False]
    assert suite.get("failures") == "1"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "no threshold given"), ({"min_accuracy": 1.5}, "--min-accuracy: must be in [0, 1]"),
    ({"percentile": 5, "max_drop": 0.1}, "--percentile: applies to --min-accuracy"),
    ({"min_accuracy": 0.5, "percentile": 101}, "--percentile: must be in [0, 100]")])
def test_bad_thresholds_name_the_flag(kwargs, message):
    with pytest.raises(EvaluationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Thresholds(**kwargs)


def test_assert_robust_passes_and_fails_with_the_lines(tiny_cnn):
    path, data = tiny_cnn
    ok = assert_robust(path, data, min_accuracy=0.0, chips=3)
    assert ok.passed
    with pytest.raises(AssertionError, match=r"FAILED \| accuracy \(mean over 3 chips\)"):
        assert_robust(path, data, min_accuracy=0.999, chips=3)
