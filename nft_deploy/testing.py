"""Robustness assertions for users' own test suites (pytest or plain ``assert``-style).

    from nft_deploy.testing import assert_robust

    def test_model_survives_the_device():
        assert_robust("model.cim.onnx", "mnist-5k", min_accuracy=0.95, percentile=5, chips=50)
"""

from __future__ import annotations

from nft_deploy.evaluation.check import CheckResult, Thresholds, check


def assert_robust(model, data, *, min_accuracy: float | None = None, percentile: float | None = None,
                  max_drop: float | None = None, min_confidence: float | None = None, chips: int = 50,
                  seed: int = 0, profile=None, **options) -> CheckResult:
    """Monte Carlo-evaluate ``model`` on ``data`` and raise ``AssertionError`` (with the PASSED/FAILED
    lines) unless every given threshold holds. ``options``: further ``EvalConfig`` fields (sigma, limit...)."""
    thresholds = Thresholds(min_accuracy=min_accuracy, percentile=percentile, max_drop=max_drop,
                            min_confidence=min_confidence)
    options.setdefault("quiet", True)
    result = check(model, data, thresholds, chips=chips, seed=seed, profile=profile, **options)
    if not result.passed:
        raise AssertionError(f"{result.evaluation.model} is not robust enough on {result.evaluation.data}:\n"
                             + result.text())
    return result


__all__ = ["assert_robust"]
