"""The main job end to end (scaled down): every method is trained, exported and compared on the same chips."""

import json
from pathlib import Path

from click.testing import CliRunner

from nft_deploy.cli import main
from nft_deploy.demo import DemoConfig, run_demo


def test_demo_trains_exports_and_compares_every_method_on_the_same_chips(tmp_path):
    cfg = DemoConfig(out=tmp_path / "demo", methods=("noise_injection", "ovf"), epochs=1, chips=4,
                     limit_train=256, limit_test=100, quiet=True)
    result = run_demo(cfg)
    assert set(result.models) == {"noise_injection", "ovf"}
    assert all(p.exists() for p in [*result.checkpoints.values(), *result.models.values()])
    report = json.loads((result.report_dir / "compare.json").read_text())
    evaluated = report["results"]
    assert [r["chips"] for r in evaluated] == [4, 4] and len({r["seed"] for r in evaluated}) == 1
    assert [r["samples"] for r in evaluated] == [100, 100]
    assert [Path(r["model"]).name for r in evaluated] == ["noise_injection.cim.onnx", "ovf.cim.onnx"]
    assert len(report["deltas"]) == 1  # ovf against the baseline, chip by chip
    md = (result.report_dir / "compare.md").read_text().splitlines()
    header = next(ln for ln in md if ln.startswith("| metric |"))
    assert header == "| metric | noise_injection.cim.onnx | ovf.cim.onnx |"
    delta = next(ln for ln in md if ln.startswith("| delta accuracy % (paired) |")).split("|")
    assert delta[2].strip() == "baseline" and delta[3].strip().startswith(("+", "-"))
    assert list((result.report_dir / "plots").glob("*.png"))
    logs = [json.loads((result.report_dir.parent / f"{m}.train.json").read_text()) for m in result.models]
    assert [log["config"]["init"] for log in logs] == ["kaiming", "kaiming"]  # the regime map's choice


def test_demo_init_reaches_training(tmp_path):
    cfg = DemoConfig(out=tmp_path, methods=("plain", "noise_injection"), init="default", epochs=1, chips=2,
                     limit_train=64, limit_test=20, quiet=True)
    run_demo(cfg)
    assert json.loads((tmp_path / "plain.train.json").read_text())["config"]["init"] == "default"


def test_demo_cli_rejects_a_bad_method_in_one_line(tmp_path):
    out = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--methods", "nope", "--quiet"])
    assert out.exit_code == 1
    assert out.output.count("\n") == 1 and "nope" in out.output and "ovf" in out.output
