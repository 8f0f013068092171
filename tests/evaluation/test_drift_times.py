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
    onnx.save(run_pass(helpers.conv(seed=3), load_profile("pcm_drift"))[0], tmp_path / "d3.cim.onnx")  # chip-sensitive
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


# ---------------------------------------------------------------- sweep --time: a grid of sigma x time


def test_a_sweep_cell_at_sigma_and_time_is_evaluate_at_that_sigma_and_time_byte_for_byte(drifting):
    from nft_deploy.evaluation.sweep import sweep

    model, data = str(drifting / "d3.cim.onnx"), str(drifting / "data.npz")
    grid = sweep([model], data, [0.02, 0.06], chips=4, time="20s,1d,1y", workers=1, quiet=True)
    assert json.loads(to_json(grid))["times"] == ["20s", "1d", "1y"]
    for j, sigma in enumerate((0.02, 0.06)):
        cell = grid.results[0][j]
        alone = evaluate(model, data, chips=4, sigma=sigma, time="20s,1d,1y", workers=2, quiet=True)
        assert to_json(cell) == to_json(alone)  # the whole cell: every time, every chip, same bytes
        at_1d = evaluate(model, data, chips=4, sigma=sigma, time="1d", workers=2, quiet=True)
        assert json.dumps(json.loads(to_json(cell))["times"][1]) == json.dumps(json.loads(to_json(at_1d))["times"][0])
        assert [c.accuracy_at[1] for c in cell.per_chip] == [c.accuracy for c in at_1d.per_chip]
    low, high = (grid.results[0][j].per_chip for j in (0, 1))
    assert [c.accuracy_at for c in low] != [c.accuracy_at for c in high]  # the sigmas did differ
    assert any(len(set(c.accuracy_at)) > 1 for c in low)  # and so did the times


def test_sweep_time_on_a_model_without_drift_fails_before_any_cell_runs(drifting, monkeypatch):
    from nft_deploy.evaluation import sweep as sweep_module

    models, data = [str(drifting / "d.cim.onnx"), str(drifting / "still.cim.onnx")], str(drifting / "data.npz")
    assert "times" not in json.loads(to_json(sweep_module.sweep(models, data, [0.03], chips=2, quiet=True)))

    def no_cell(*args, **kw):
        raise AssertionError("a cell ran before the user error was reported")

    monkeypatch.setattr(sweep_module, "run_monte_carlo", no_cell)
    with pytest.raises(EvaluationError, match=r"still.cim.onnx: --time 1y: profile 'pcm_8bit' has no drift section"):
        sweep_module.sweep(models, data, [0.03], chips=2, time="1y", quiet=True)


def test_cli_sweep_reports_and_plots_accuracy_per_time(drifting):
    d = drifting
    res = CliRunner().invoke(main, ["sweep", str(d / "d.cim.onnx"), str(d / "d3.cim.onnx"), "--data",
                                    str(d / "data.npz"), "--sigmas", "0:0.06:0.03", "--time", "20s,1y", "--chips",
                                    "3", "--quiet", "--json", str(d / "s.json"), "--markdown", str(d / "s.md"),
                                    "--plots", str(d / "plots")])
    assert res.exit_code == 0, res.output
    doc = json.loads((d / "s.json").read_text())
    assert list(doc)[:5] == ["schema", "version", "models", "sigmas", "times"] and doc["times"] == ["20s", "1y"]
    cells = [cell for row in doc["results"] for cell in row]
    assert len(cells) == 6 and all([t["label"] for t in c["times"]] == ["20s", "1y"] for c in cells)
    lines = (d / "s.md").read_text().splitlines()
    assert "| model | sigma | accuracy % 20s | accuracy % 1y | 95% CI (1y) |" in lines[2]
    for row, cell in zip(lines[4:], cells, strict=True):  # one row per model and sigma, a mean per time
        assert row.split(" | ")[1:4] == [f"{cell['sigma']:g}", *(f"{100 * t['accuracy']['mean']:.2f}"
                                                               for t in cell["times"])]
    assert (d / "plots" / "accuracy_vs_sigma.png").stat().st_size > 0
