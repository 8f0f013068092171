"""``--time``: every chip programmed once and read at every time (paired), a time axis in the JSON, the same
bytes for any worker count, plots against log time, and check gating at the last time."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from nft_deploy.converters.graph_pass import run_pass

from nft_deploy.cli import main
from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation.results import to_json
from nft_deploy.evaluation.runner import evaluate
from nft_deploy.profiles import load_profile


@pytest.fixture
def drifting(tmp_path, helpers):
    x, y = helpers.data()
    np.savez(tmp_path / "data.npz", x=x, y=y, x_test=x, y_test=y)
    onnx.save(run_pass(helpers.conv(), load_profile("pcm_drift"))[0], tmp_path / "d.cim.onnx")
    onnx.save(run_pass(helpers.conv(), load_profile("pcm_8bit"))[0], tmp_path / "still.cim.onnx")
    return tmp_path


def _run(path, **kw):
    return evaluate(str(path / "d.cim.onnx"), str(path / "data.npz"), chips=6, quiet=True, **kw)


def test_every_chip_is_read_at_every_time_and_the_json_has_a_time_axis(drifting):
    r = _run(drifting, time="20s,1d,1y", workers=1)
    doc = json.loads(to_json(r))
    assert doc["time"] == "1y" and [t["label"] for t in doc["times"]] == ["20s", "1d", "1y"]
    assert [t["seconds"] for t in doc["times"]] == [20.0, 86400.0, 31557600.0]
    assert all(len(c["accuracy_at"]) == 3 for c in doc["per_chip"])
    assert doc["accuracy"]["mean"] == doc["times"][-1]["accuracy"]["mean"]  # top level: the last time
    # the first read at t0 is the chip as programmed: the run without --time, chip by chip
    plain = _run(drifting, workers=1)
    assert [c.accuracy_at[0] for c in r.per_chip] == [c.accuracy for c in plain.per_chip]
    assert "times" not in json.loads(to_json(plain)) and "accuracy_at" not in to_json(plain)


def test_same_seed_same_bytes_for_any_worker_count(drifting):
    one, two = (to_json(_run(drifting, time="1h,1y", workers=w)) for w in (1, 2))
    assert one == two


def test_time_on_a_profile_without_drift_is_one_line(drifting):
    with pytest.raises(EvaluationError, match=r"--time 1y: profile 'pcm_8bit' has no drift section"):
        evaluate(str(drifting / "still.cim.onnx"), str(drifting / "data.npz"), chips=2, time="1y", quiet=True)


def test_cli_plots_accuracy_against_time_and_check_gates_at_the_last_time(drifting):
    d = drifting
    res = CliRunner().invoke(main, ["evaluate", str(d / "d.cim.onnx"), "--data", str(d / "data.npz"), "--chips", "4",
                                    "--time", "20s,1h,1y", "--quiet", "--json", str(d / "r.json"), "--plots",
                                    str(d / "plots")])
    assert res.exit_code == 0, res.output
    assert (d / "plots" / "accuracy_vs_time.png").stat().st_size > 0
    at_year = json.loads((d / "r.json").read_text())["times"][-1]["accuracy"]["mean"]
    common = ["check", str(d / "d.cim.onnx"), "--data", str(d / "data.npz"), "--chips", "4", "--fixed", "--quiet",
              "--time", "20s,1y", "--min-accuracy"]
    ok = CliRunner().invoke(main, [*common, f"{at_year - 0.01:.4f}"])
    bad = CliRunner().invoke(main, [*common, f"{min(at_year + 0.01, 1):.4f}"])
    assert ok.exit_code == 0 and bad.exit_code == 1, (ok.output, bad.output)
    res = CliRunner().invoke(main, ["evaluate", str(d / "d.cim.onnx"), "--data", str(d / "data.npz"), "--time",
                                    "1y,1d"])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "increasing" in res.output
