"""Monte Carlo evaluation of CIM-deployed ONNX models in ONNX Runtime: metrics, comparison, CI gate.

- ``runner.evaluate(model, data, chips=200, seed=0, ...) -> EvaluationResult`` (also exported here);
  ``engine="torch"`` runs a checkpoint in the torch simulation on the same chips (``torch_engine``)
- ``compare.compare([a, b, ...], data, ...) -> CompareResult`` (same chips, paired deltas)
- ``sweep.sweep([models], data, "0:0.4:0.05") -> SweepResult``
- ``check.check(model, data, Thresholds(...)) -> CheckResult`` (PASSED/FAILED lines, JUnit XML)
- reports: ``print_report``, ``write_markdown``, ``write_plots``; JSON: ``write_json``

(``compare``, ``sweep`` and ``check`` are not re-exported here because their names are their modules'.)
"""

from __future__ import annotations

from nft_deploy.evaluation.check import CheckResult, Thresholds, apply_thresholds, junit_xml, write_junit
from nft_deploy.evaluation.deployed import DeployedModel, load_deployed
from nft_deploy.evaluation.reports import markdown, print_report, write_markdown, write_plots
from nft_deploy.evaluation.results import CompareResult, EvaluationResult, SweepResult, to_json, write_json
from nft_deploy.evaluation.runner import EvalConfig, evaluate
from nft_deploy.evaluation.sweep import parse_sweep

__all__ = [
    "CheckResult", "CompareResult", "DeployedModel", "EvalConfig", "EvaluationResult", "SweepResult", "Thresholds",
    "apply_thresholds", "evaluate", "junit_xml", "load_deployed", "markdown", "parse_sweep", "print_report",
    "to_json", "write_json", "write_junit", "write_markdown", "write_plots",
]
