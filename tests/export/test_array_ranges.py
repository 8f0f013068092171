"""Calibrated ADC ranges per array (``--adc-ranges-per array``): each (group, row tile, column tile) gets the
percentile of its row tile's partial sum over the output channels its column tile holds, checked against a torch
reference on the clean device; the worst case uses the array's own largest weight; ONNX Runtime and torch agree
per chip with them; the graph holds one range per output channel; a plan written with one float per row tile
still loads; a bad ``--adc-ranges-per`` is one line and exit code 1."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from nft_deploy.converters.graph_pass import PassConfig, run_pass

from nft_deploy.arrays import adc_fixed, array_channels, tiling
from nft_deploy.calibration import calibrate, clean_profile
from nft_deploy.device_plan import DevicePlan, LayerPlan
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.runner import chip_logits
from nft_deploy.export import export_model
from nft_deploy.noise import quantize_activation
from nft_deploy.profiles import load_profile, profile_from_dict
from nft_deploy.training.montecarlo import chip_weights, model_plan, plan_logits

from .conftest import assert_torch_matches_onnxruntime

NARROW = {"schema_version": 1, "name": "narrow", "weights": {"bits": 4, "bits_per_cell": 2},
          "programming": {"sigma": 0.05}, "io": {"input_bits": 8, "output_bits": 6},
          "array": {"rows": 64, "cols": 4, "differential": False}}
"""64 rows, 4 columns = 2 outputs of 2 cells per column tile: the ConvNet's conv (4 outputs) is 3 row tiles x 2
column tiles, its Linear (5 outputs) 1 x 3."""
GROUPED = {**NARROW, "array": {"rows": 18, "cols": 4, "differential": False}}
"""18 rows = 2 input channels of a 3x3 kernel: GroupNet's conv is 2 groups x 2 row tiles x 2 column tiles."""


class GroupNet(torch.nn.Module):
    """Conv2d(8 -> 6, 3x3, groups=2): per group 4 input channels (2 row tiles) and 3 outputs (2 + 1)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 6, 3, groups=2)
        self.fc = torch.nn.Linear(24, 3)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


@pytest.fixture(scope="module")
def gnet():
    torch.manual_seed(5)
    model = GroupNet().eval()
    onnx_model = export_model(model, profile=None, no_device=True, input_shape=(8, 4, 4)).model
    x = np.random.default_rng(6).standard_normal((40, 8, 4, 4)).astype(np.float32)
    return model, onnx_model, x


def _partial_sums(model, prof, x, groups, tiles):
    """Each row tile's partial sum of ``model.conv`` on the clean device, by slicing: input channels ``lo:hi`` of
    each group, the bias with tile 0. N x C_out x H x W, per row tile."""
    plan = model_plan(model, clean_profile(prof), x)
    w = chip_weights(model, plan, 0, None)["conv.weight"].detach()
    xq = quantize_activation(torch.from_numpy(x), 8)
    per_in, per_out = w.shape[1], w.shape[0] // groups
    out = []
    for k, (lo, hi) in enumerate(tiles):
        parts = [torch.nn.functional.conv2d(xq[:, g * per_in + lo: g * per_in + hi], w[g * per_out:(g + 1) * per_out,
                 lo:hi], model.conv.bias.detach()[g * per_out:(g + 1) * per_out] if k == 0 else None)
                 for g in range(groups)]
        out.append(torch.cat(parts, 1).abs().numpy())
    return out


def _percentiles(part, channels, q):
    return [float(np.percentile(part[:, c], q)) for c in channels]


def test_ranges_per_array_are_the_percentile_of_each_column_tiles_channels(net):
    model, onnx_model, x = net
    prof = profile_from_dict(NARROW)
    arrays = calibrate(onnx_model, prof, x, percentile=99.0, per="array")
    parts = _partial_sums(model, prof, x, 1, ((0, 7), (7, 14), (14, 20)))
    for k, part in enumerate(parts):  # conv outputs 0-1 on column tile 0, 2-3 on column tile 1
        assert arrays["conv"][1][k] == pytest.approx(_percentiles(part, (slice(0, 2), slice(2, 4)), 99.0), rel=1e-4)
    assert arrays["conv"][0] == calibrate(onnx_model, prof, x, percentile=99.0)["conv"][0]  # the DAC is per layer
    at_max, shared = (calibrate(onnx_model, prof, x, percentile=100.0, per=p) for p in ("array", "row_tile"))
    for name in ("conv", "fc"):  # the largest array range of a row tile is its shared range
        assert [max(a) for a in at_max[name][1]] == pytest.approx(list(shared[name][1]), rel=1e-6)
    assert [len(a) for a in at_max["fc"][1]] == [3]  # the Linear: one row tile of three column tiles


def test_a_grouped_conv_has_arrays_per_group_row_tile_and_column_tile(gnet):
    model, onnx_model, x = gnet
    prof = profile_from_dict(GROUPED)
    ranges = calibrate(onnx_model, prof, x, percentile=99.5, per="array")["conv"][1]
    parts = _partial_sums(model, prof, x, 2, ((0, 2), (2, 4)))
    for k, part in enumerate(parts):  # (group, column tile): channels 0-1, 2, 3-4, 5
        expected = _percentiles(part, (slice(0, 2), slice(2, 3), slice(3, 5), slice(5, 6)), 99.5)
        assert ranges[k] == pytest.approx(expected, rel=1e-4)


def test_worst_case_per_array_uses_the_arrays_largest_weight(net):
    model, onnx_model, x = net
    prof = profile_from_dict(NARROW)
    worst = calibrate(onnx_model, prof, x, percentile=99.0, adc_range="max", per="array")
    reached = calibrate(onnx_model, prof, x, percentile=100.0, per="array")["conv"][1]
    dac, adc = worst["conv"]
    w = np.abs(model.conv.weight.detach().numpy())
    for k, (lo, hi) in enumerate(((0, 7), (7, 14), (14, 20))):
        bound = [(hi - lo) * 9 * dac * float(w[o, lo:hi].max()) for o in (slice(0, 2), slice(2, 4))]
        assert adc[k] == pytest.approx(np.maximum(bound, reached[k]).tolist(), rel=1e-6)
    layer_wide = calibrate(onnx_model, prof, x, percentile=99.0, adc_range="max")["conv"][1]
    assert all(max(a) <= b * (1 + 1e-6) for a, b in zip(adc, layer_wide, strict=True))


@pytest.mark.parametrize("case", ["net", "gnet", "lenet5"])
def test_torch_and_onnxruntime_agree_per_chip_with_ranges_per_array(net, gnet, built_in, case):
    if case == "lenet5":  # the built-in profile: differential pairs, fc1's 60 outputs on two column tiles
        lenet = built_in["lenet5"]
        model, onnx_model, x = lenet.module, lenet.onnx, lenet.x
        prof = profile_from_dict({**load_profile("rram_128x128_adc6").to_dict(), "read_noise": {"sigma": 0.0}})
    else:
        model, onnx_model, x = net if case == "net" else gnet
        prof = profile_from_dict(NARROW if case == "net" else GROUPED)
    ranges = calibrate(onnx_model, prof, x, percentile=99.0, per="array")
    deployed = load_deployed(run_pass(onnx_model, prof, PassConfig(ranges=ranges))[0])
    assert deployed.plan.ranges == ranges  # the plan carries them (through its JSON metadata)
    plan = model_plan(model, prof, x).with_ranges(deployed.plan.ranges)
    assert_torch_matches_onnxruntime(model, deployed, plan, x)
    shared = calibrate(onnx_model, prof, x, percentile=99.0)
    other = load_deployed(run_pass(onnx_model, prof, PassConfig(ranges=shared))[0])
    assert np.abs(chip_logits(other, x, 0, seed=9) - chip_logits(deployed, x, 0, seed=9)).max() > 1e-4


def test_the_graph_holds_one_range_per_output_channel_broadcast_over_its_channel_axis(net):
    _, onnx_model, x = net
    prof = profile_from_dict(NARROW)
    ranges = calibrate(onnx_model, prof, x, per="array")
    deployed = run_pass(onnx_model, prof, PassConfig(ranges=ranges))[0]
    consts = {i.name.split("/")[-1]: onnx.numpy_helper.to_array(i) for i in deployed.graph.initializer
              if i.name.startswith("nft/io/") and "/adc" in i.name and i.name.endswith("_range")}
    a, b = ranges["conv"][1][2]
    np.testing.assert_array_equal(consts["adc2_range"], np.array([a, a, b, b], np.float32).reshape(4, 1, 1))
    assert consts["adc_range"].shape == (5,)  # the Linear's output channels are its last axis
    assert {n.op_type for n in deployed.graph.node if n.domain not in ("", "ai.onnx")} == set()


def test_adc_fixed_spreads_each_arrays_range_over_its_channels():
    t = tiling((6, 4, 3, 3), 0, 2, 2, 18, 4, False)  # 2 groups of 3 outputs, 2 outputs per column tile
    assert array_channels(t) == [slice(0, 2), slice(2, 3), slice(3, 5), slice(5, 6)]
    lay = LayerPlan("c", "Conv", "c.weight", (6, 4, 3, 3), 0, True, "mapped", None, tiles=t,
                    adc_range=(1.5, (1.0, 2.0, 3.0, 4.0)))
    assert adc_fixed(lay, 0, 4, False) == 1.5
    np.testing.assert_array_equal(adc_fixed(lay, 1, 4, False).ravel(), [1, 1, 2, 3, 3, 4])
    assert adc_fixed(lay, 1, 4, False).shape == (6, 1, 1)
    mm = LayerPlan("m", "MatMul", "m", (6, 4), 0, True, "mapped", None, tiles=tiling((6, 4), 0, 1, 2, 8, 4, False),
                   adc_range=((1.0, 2.0, 3.0),))
    assert adc_fixed(mm, 0, 3, True).shape == (6, 1)  # W @ X: output channels on the second-last axis
    assert adc_fixed(mm, 0, 3, False).shape == (6,)  # torch's linear(x, W) on a 3-D x: channels last


def test_torch_linear_on_a_sequence_quantizes_each_output_channel_at_its_arrays_range():
    """linear(x, W) on x of shape (N, L, F) is the MatMul on W.T it exports to (output axis 1, channels last);
    each row tile's partial sum through its ADC with per-channel ranges, then the bias (the graph's Add after
    the MatMul), against a float64 numpy reference."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 6)).eval()
    x = np.random.default_rng(1).standard_normal((3, 5, 16)).astype(np.float32)
    prof = profile_from_dict({"schema_version": 1, "name": "seq", "weights": {"bits": 4, "bits_per_cell": 4,
                              "quantize": False}, "programming": {"sigma": 0.0}, "io": {"output_bits": 4},
                              "array": {"rows": 8, "cols": 4, "differential": False}})
    plan = model_plan(model, prof, x)
    (lay,) = plan.mapped
    assert (lay.op, lay.shape, lay.out_axis) == ("MatMul", (16, 6), 1)
    assert lay.tiles.row_tiles == 2 and lay.tiles.col_tiles == 2
    ranges = {lay.name: (None, ((1.0, 2.0), (3.0, 0.5)))}  # row tile k: (array of outputs 0-3, of outputs 4-5)
    plan = plan.with_ranges(ranges)
    with torch.no_grad():
        got = plan_logits(model, plan, chip_weights(model, plan, 0, None), torch.from_numpy(x), 64)
    w, b = model[0].weight.detach().double().numpy(), model[0].bias.detach().double().numpy()
    want = 0.0
    for k, rows in enumerate((slice(0, 8), slice(8, 16))):
        part = x[..., rows].astype(np.float64) @ w[:, rows].T
        m = np.repeat(ranges[lay.name][1][k], (4, 2))  # per output channel, last axis
        want = want + np.clip(np.round(part / m * 7), -7, 7) * m / 7
    np.testing.assert_allclose(got, want + b, rtol=1e-5, atol=1e-5)


def test_a_plan_written_with_one_float_per_row_tile_still_loads(net):
    _, onnx_model, x = net
    prof = profile_from_dict(NARROW)
    doc = json.loads(load_deployed(run_pass(onnx_model, prof)[0]).plan.to_json())
    row = next(r for r in doc["layers"] if r["name"] == "conv")
    row.update(dac_range=1.5, adc_range=[2.0, 3.0, 4.0])  # what export --calibrate wrote before ranges per array
    old = DevicePlan.from_json(json.dumps(doc))
    conv = next(lay for lay in old.layers if lay.name == "conv")
    assert conv.adc_range == (2.0, 3.0, 4.0) and adc_fixed(conv, 1, 4, False) == 3.0
    arrays = load_deployed(run_pass(onnx_model, prof, PassConfig(ranges=calibrate(
        onnx_model, prof, x, per="array")))[0]).plan
    again = DevicePlan.from_json(arrays.to_json())
    assert again.ranges == arrays.ranges and isinstance(again.ranges["conv"][1][0], tuple)


def test_a_bad_adc_ranges_per_is_one_line_naming_the_flag_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from nft_deploy.checkpoint import save_checkpoint
    from nft_deploy.cli import main
    from nft_deploy.models import build_model

    ckpt = tmp_path / "lenet.pt"
    save_checkpoint(ckpt, model=build_model("lenet5", width=0.5), arch={"name": "lenet5", "kwargs": {"width": 0.5}},
                    profile=None, method={"name": "plain"}, input_shape=(1, 28, 28))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cal.npz", x=rng.random((8, 1, 28, 28), dtype=np.float32), y=rng.integers(0, 10, 8))
    base = ["export", str(ckpt), "--profile", "rram_128x128_adc6", "-o", str(tmp_path / "m.onnx"), "-q"]
    bad = CliRunner().invoke(main, [*base, "--calibrate", str(tmp_path / "cal.npz"), "--adc-ranges-per", "column"])
    assert bad.exit_code == 1, bad.output
    assert bad.output.strip() == "Error: --adc-ranges-per: 'column' is not one of row_tile, array"
    lone = CliRunner().invoke(main, [*base, "--adc-ranges-per", "array"])
    assert lone.exit_code == 1 and "--adc-ranges-per array: needs --calibrate DATA" in lone.output, lone.output
    assert not (tmp_path / "m.onnx").exists()
    good = CliRunner().invoke(main, [*base, "--calibrate", str(tmp_path / "cal.npz"), "--adc-ranges-per", "array"])
    assert good.exit_code == 0, good.output
    plan = load_deployed(onnx.load(str(tmp_path / "m.onnx"))).plan
    assert any(isinstance(entry, tuple) for lay in plan.mapped for entry in lay.adc_range)  # fc1: 4 column tiles
