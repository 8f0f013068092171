"""Calibrated converter ranges (``export --calibrate``): a fixed range clips; the ranges are the percentile of
what each DAC and each row tile's ADC sees on the clean deployed graph; they go into graph constants, the
plan metadata and the plan table; torch and ONNX Runtime agree per chip with them; without calibration the
graph is today's."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from nft_deploy.converters.graph_pass import PassConfig, run_pass

from nft_deploy.calibration import calibrate, clean_profile
from nft_deploy.device_plan import table
from nft_deploy.errors import ConfigError
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.runner import chip_logits
from nft_deploy.noise import quantize_activation
from nft_deploy.profiles import load_profile, profile_from_dict
from nft_deploy.training.montecarlo import chip_weights, model_plan

from .conftest import assert_torch_matches_onnxruntime

PROFILE = {"schema_version": 1, "name": "cal", "weights": {"bits": 4, "bits_per_cell": 2},
           "programming": {"sigma": 0.05}, "read_noise": {"sigma": 0.02}, "io": {"input_bits": 8, "output_bits": 6},
           "array": {"rows": 64, "cols": 64}}


def test_a_fixed_range_rounds_on_its_grid_and_clips_beyond_it():
    x = np.array([[-3.0, -0.4, 0.26, 0.74, 2.0]], np.float32)
    np.testing.assert_allclose(quantize_activation(x, 3, fixed=1.0), [[-1.0, -1 / 3, 1 / 3, 2 / 3, 1.0]], rtol=1e-6)
    t = torch.tensor(x, requires_grad=True)
    quantize_activation(t, 3, fixed=1.0).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), np.ones_like(x))  # straight-through


def test_ranges_are_the_percentile_of_each_converters_input_per_row_tile(net):
    model, onnx_model, x = net
    prof = profile_from_dict(PROFILE)
    ranges = calibrate(onnx_model, prof, x, percentile=100.0)
    assert set(ranges) == {"conv", "fc"}
    dac, adc = ranges["conv"]
    assert len(adc) == 3 and len(ranges["fc"][1]) == 1  # three row tiles of the conv, one of the Linear
    assert dac == pytest.approx(float(np.abs(x).max()), rel=1e-6)  # the first DAC sees the raw input
    # tile 0's partial sum on the clean device (quantized weights, DAC on): channels 0..6 and the bias
    plan = model_plan(model, clean_profile(prof), x)
    w = chip_weights(model, plan, 0, None)["conv.weight"].detach()
    xq = quantize_activation(torch.from_numpy(x), 8)
    part0 = torch.nn.functional.conv2d(xq[:, :7], w[:, :7], model.conv.bias.detach())
    assert adc[0] == pytest.approx(float(part0.abs().max()), rel=1e-5)
    lower = calibrate(onnx_model, prof, x, percentile=50.0)
    assert all(a < b for a, b in zip(lower["conv"][1], adc, strict=True))


def test_worst_case_adc_ranges_are_rows_times_dac_range_times_the_largest_weight(net):
    model, onnx_model, x = net
    prof = profile_from_dict(PROFILE)
    worst = calibrate(onnx_model, prof, x, percentile=99.0, adc_range="max")
    seen = calibrate(onnx_model, prof, x, percentile=99.0)
    dac, adc = worst["conv"]
    assert dac == seen["conv"][0]  # the DAC keeps its calibrated range
    w_max = float(model.conv.weight.detach().abs().max())
    # 20 input channels of a 3x3 kernel on 64 rows: 7 channels (63 rows) per tile, 7 + 7 + 6
    np.testing.assert_allclose(adc, [63 * dac * w_max, 63 * dac * w_max, 54 * dac * w_max], rtol=1e-6)
    fc_dac, (fc_adc,) = worst["fc"]
    fc_w = model.fc.weight.detach().numpy()
    assert fc_adc == pytest.approx(max(fc_w.shape[1] * fc_dac * float(np.abs(fc_w).max()), seen["fc"][1][0]), rel=1e-6)
    assert all(a > b for a, b in zip(adc, seen["conv"][1], strict=True))  # the worst case is wider than the data
    with pytest.raises(ConfigError, match="--adc-range max: layer 'conv' has an ADC but no DAC"):
        calibrate(onnx_model, profile_from_dict({**PROFILE, "io": {"output_bits": 6}}), x, adc_range="max")
    with pytest.raises(ConfigError, match="--adc-range: 'min' is not one of percentile, max"):
        calibrate(onnx_model, prof, x, adc_range="min")


def test_calibrated_ranges_go_into_graph_constants_metadata_and_the_table(net):
    _, onnx_model, x = net
    prof = profile_from_dict(PROFILE)
    ranges = calibrate(onnx_model, prof, x)
    deployed = run_pass(onnx_model, prof, PassConfig(ranges=ranges))[0]
    consts = {i.name: float(onnx.numpy_helper.to_array(i).ravel()[0]) for i in deployed.graph.initializer
              if i.name.startswith("nft/io/") and i.name.endswith("_range")}
    assert consts["nft/io/" + _node(deployed, "conv") + "/adc1_range"] == pytest.approx(ranges["conv"][1][1])
    assert sum(1 for n in deployed.graph.node if n.op_type == "Clip" and "/adc" in n.name) == 4
    plan = load_deployed(deployed).plan
    assert plan.ranges == {k: (pytest.approx(d), tuple(pytest.approx(a) for a in adc)) for k, (d, adc) in
                           ranges.items()}
    lines = table(plan)
    assert lines[0].split()[-2:] == ["DAC/ADC", "range"] and ".." in lines[1]
    plain = run_pass(onnx_model, prof)[0]
    assert not any(n.op_type == "Clip" and "/adc" in n.name for n in plain.graph.node) and "DAC/ADC" not in table(
        load_deployed(plain).plan)[0]


def _node(deployed, layer):
    return next(n.name.split("/")[2] for n in deployed.graph.node if n.name.startswith("nft/io/")
                and n.name.endswith("/tile0"))


@pytest.mark.parametrize("profile", [PROFILE, "rram_128x128_adc6"], ids=["tiles64", "rram_128x128_adc6"])
def test_torch_and_onnxruntime_agree_per_chip_with_calibrated_ranges(net, profile):
    model, onnx_model, x = net
    prof = profile_from_dict(PROFILE) if isinstance(profile, dict) else load_profile(profile)
    prof = profile_from_dict({**prof.to_dict(), "read_noise": {"sigma": 0.0}})  # the torch engine draws none
    ranges = calibrate(onnx_model, prof, x, percentile=99.0)
    deployed = load_deployed(run_pass(onnx_model, prof, PassConfig(ranges=ranges))[0])
    plan = model_plan(model, prof, x).with_ranges(deployed.plan.ranges)
    assert_torch_matches_onnxruntime(model, deployed, plan, x)
    full = chip_logits(load_deployed(run_pass(onnx_model, prof)[0]), x, 0, seed=9)
    assert np.abs(full - chip_logits(deployed, x, 0, seed=9)).max() > 1e-3  # the ranges changed the chip


def test_the_calibration_device_is_noise_free_even_with_a_noisy_override_on_a_quiet_profile():
    prof = profile_from_dict({**PROFILE, "programming": {"sigma": 0.0}, "stuck_at": {"zero_rate": 0.01},
                              "mapping": {"overrides": [{"layers": "fc", "programming": {"sigma": 0.3},
                                                         "read_noise": {"sigma": 0.1}}]}})
    clean = clean_profile(prof)
    assert not clean.is_noisy and clean.array == prof.array and clean.io == prof.io


def test_export_calibrate_writes_the_ranges_and_plan_shows_them(tmp_path):
    from click.testing import CliRunner

    from nft_deploy.checkpoint import save_checkpoint
    from nft_deploy.cli import main
    from nft_deploy.models import build_model

    torch.manual_seed(0)
    ckpt = tmp_path / "lenet.pt"
    save_checkpoint(ckpt, model=build_model("lenet5", width=0.5), arch={"name": "lenet5", "kwargs": {"width": 0.5}},
                    profile=None, method={"name": "plain"}, input_shape=(1, 28, 28))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cal.npz", x=rng.random((40, 1, 28, 28), dtype=np.float32), y=rng.integers(0, 10, 40))
    out = tmp_path / "m.cim.onnx"
    res = CliRunner().invoke(main, ["export", str(ckpt), "--profile", "rram_128x128_adc6", "--calibrate",
                                    str(tmp_path / "cal.npz"), "--calibration-samples", "16", "--percentile", "99.9",
                                    "-o", str(out), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    plan = load_deployed(onnx.load(str(out))).plan
    assert set(plan.ranges) == {lay.name for lay in plan.mapped}
    shown = CliRunner().invoke(main, ["plan", str(out)], catch_exceptions=False)
    assert shown.exit_code == 0 and "DAC/ADC range" in shown.output, shown.output
    bad = CliRunner().invoke(main, ["export", str(ckpt), "--profile", "rram_128x128_adc6", "--calibrate",
                                    str(tmp_path / "cal.npz"), "--percentile", "0", "-o", str(out), "-q"])
    assert bad.exit_code == 1 and "--percentile: must be in (0, 100], got 0" in bad.output
    lone = CliRunner().invoke(main, ["export", str(ckpt), "--profile", "rram_128x128_adc6", "--adc-range", "max",
                                     "-o", str(tmp_path / "lone.onnx"), "-q"])
    assert lone.exit_code == 1 and "--adc-range max: needs --calibrate DATA" in lone.output, lone.output
    assert not (tmp_path / "lone.onnx").exists()
    wrong = CliRunner().invoke(main, ["export", str(ckpt), "--profile", "rram_128x128_adc6", "--calibrate",
                                      str(tmp_path / "cal.npz"), "--adc-range", "min", "-o", str(tmp_path / "w.onnx")])
    assert wrong.exit_code == 1 and "--adc-range: 'min' is not one of percentile, max" in wrong.output, wrong.output
    assert not (tmp_path / "w.onnx").exists()


def test_ranges_for_a_layer_the_plan_does_not_map_are_refused_not_dropped(net):
    from nft_deploy.errors import ExportError

    model, _, x = net
    plan = model_plan(model, profile_from_dict(PROFILE), x)
    assert plan.with_ranges({"fc": (1.0, (2.0,))}).ranges == {"fc": (1.0, (2.0,))}
    with pytest.raises(ExportError, match="converter ranges for layers this plan does not map: val_1 "):
        plan.with_ranges({"fc": (1.0, (2.0,)), "val_1": (1.0, None)})


class Twice(torch.nn.Module):
    """One Linear called twice on 3-D activations (the exporter folds two copies of W.T; one layer): its one
    DAC and ADC convert both calls, and the second call's activations are 4x the first's."""

    def __init__(self):
        super().__init__()
        self.mix = torch.nn.Linear(6, 6, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(4 * torch.eye(6))
        self.head = torch.nn.Linear(6, 3)

    def forward(self, x):  # x (N, 1, 4, 6)
        return self.head(self.mix(self.mix(x.flatten(1, 2)))).mean(1)


def test_a_layer_called_twice_is_calibrated_on_what_both_calls_convert():
    from nft_deploy.export import export_model

    torch.manual_seed(0)
    x = np.random.default_rng(0).uniform(-1, 1, (16, 1, 4, 6)).astype(np.float32)
    float_onnx = export_model(Twice().eval(), profile=None, no_device=True, input_shape=(1, 4, 6)).model
    prof = profile_from_dict({"schema_version": 1, "name": "io", "weights": {"quantize": False},
                              "programming": {"sigma": 0.0}, "io": {"input_bits": 8, "output_bits": 8}})
    _, report = run_pass(float_onnx, prof)
    assert [len(lay.nodes) for lay in report.plan.mapped if lay.name == "mix"] == [2]
    ranges = calibrate(float_onnx, prof, x, percentile=100.0)
    dac, (adc,) = ranges["mix"]
    # call 1 converts x (max |x|) and 4x on its output; call 2 converts that 4x and 16x: the maxima are call 2's
    top = float(np.abs(x).max())
    assert dac == pytest.approx(4 * top, rel=0.02) and adc == pytest.approx(16 * top, rel=0.02)
    lower = calibrate(float_onnx, prof, x, percentile=50.0)["mix"]  # the median of both calls' values together
    both = np.concatenate([np.abs(x).ravel(), 4 * np.abs(x).ravel()])
    assert lower[0] == pytest.approx(float(np.percentile(both, 50)), rel=0.02)
