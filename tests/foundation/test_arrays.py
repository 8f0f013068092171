"""Tile counts of the crossbar-array rule (``nft_deploy.arrays``) against hand-computed cases, the row masks,
the plan's columns and totals, and the errors a layer that cannot fit raises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nft_deploy.arrays import row_masks, tiling
from nft_deploy.device_plan import FoundWeight, compile_plan, table
from nft_deploy.errors import ExportError
from nft_deploy.profiles import load_profile, profile_from_dict
from nft_deploy.training.crossbars import torch_plan


def _profile(rows=128, cols=128, bits=4, bits_per_cell=2, differential=True):
    return profile_from_dict({"schema_version": 1, "name": "arr", "weights": {"bits": bits, "bits_per_cell": bits_per_cell},
                              "io": {"output_bits": 6},
                              "array": {"rows": rows, "cols": cols, "differential": differential}})


def _tiles(op, shape, out_axis=0, groups=1, **kw):
    plan = compile_plan([FoundWeight("l", op, "l.weight", shape, out_axis, groups=groups)], _profile(**kw))
    return plan.layers[0].tiles


def test_a_3x3_conv_with_64_input_channels_on_128_rows_is_5_row_tiles_of_14_channels():
    t = _tiles("Conv", (32, 64, 3, 3))  # 128 // 9 = 14 channels (126 rows) per tile; ceil(64 / 14) = 5
    assert (t.channels_per_tile, t.row_tiles, t.col_tiles, t.arrays) == (14, 5, 1, 5)  # 32 x 2 cells x 2 = 128 columns
    assert t.utilization == pytest.approx(64 * 9 * 32 * 4 / (5 * 128 * 128))


def test_a_512x10_gemm_is_4_row_tiles_and_one_column_tile():
    t = _tiles("Gemm", (10, 512))  # torch Linear(512, 10): outputs on axis 0
    assert (t.row_tiles, t.col_tiles, t.arrays) == (4, 1, 4)
    assert t.utilization == pytest.approx(512 * 10 * 4 / (4 * 128 * 128))
    assert _tiles("MatMul", (512, 10), out_axis=1).arrays == 4  # the same matrix stored [in, out]


def test_outputs_split_into_column_tiles_and_a_differential_pair_doubles_the_columns():
    assert _tiles("Gemm", (300, 10)).col_tiles == 10  # 4 columns per output: 32 outputs per tile
    assert _tiles("Gemm", (300, 10), differential=False).col_tiles == 5
    assert _tiles("Gemm", (300, 10), bits=4, bits_per_cell=4).col_tiles == 5  # one cell per weight


def test_a_depthwise_conv_is_one_array_per_channel():
    t = _tiles("Conv", (32, 1, 3, 3), groups=32)
    assert (t.groups, t.row_tiles, t.col_tiles, t.arrays) == (32, 1, 1, 32)
    assert t.utilization == pytest.approx(9 * 4 / (128 * 128))


def test_a_grouped_conv_tiles_each_group_as_its_own_matrix():
    t = _tiles("Conv", (64, 16, 3, 3), groups=4)  # 16 channels x 9 taps = 144 rows per group: 2 row tiles
    assert (t.in_channels, t.outputs, t.row_tiles, t.col_tiles, t.arrays) == (16, 16, 2, 1, 8)
    tt = _tiles("ConvTranspose", (64, 16, 3, 3), out_axis=1, groups=4)  # [C_in, C_out/g, k, k]
    assert (tt.in_channels, tt.outputs, tt.row_tiles, tt.arrays) == (16, 16, 2, 8)


def test_row_masks_cover_every_input_channel_once_per_group():
    t = tiling((40, 8, 3, 3), 1, 2, 1, 128, 128, True)  # ConvTranspose: axis 0 runs over both groups of 20
    masks = row_masks((40, 8, 3, 3), 1, t)
    assert len(masks) == 2 and masks[0].shape == (40, 1, 1, 1)
    np.testing.assert_array_equal(sum(masks).ravel(), np.ones(40))
    np.testing.assert_array_equal(masks[0].ravel()[:20], [1] * 14 + [0] * 6)  # 14 channels in tile 0 of each group
    np.testing.assert_array_equal(masks[0].ravel()[20:], [1] * 14 + [0] * 6)
    assert row_masks((10, 100), 0, tiling((10, 100), 0, 1, 1, 128, 128, True)) == []  # one row tile: no split


def test_a_kernel_wider_than_the_rows_or_an_output_wider_than_the_columns_is_refused():
    with pytest.raises(ExportError, match=r"layer 'l': a kernel of 25 taps does not fit array.rows 16"):
        _tiles("Conv", (4, 2, 5, 5), rows=16)
    with pytest.raises(ExportError, match=r"array.cols must be >= 4"):
        _tiles("Gemm", (4, 4), cols=2)


def test_torch_finds_a_convolutions_groups_and_the_plan_shows_tiles_arrays_and_totals():
    net = torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, groups=4), torch.nn.Conv2d(64, 64, 3, groups=64),
                              torch.nn.Flatten(), torch.nn.Linear(64 * 4 * 4, 10))
    plan = torch_plan(net, load_profile("rram_128x128_adc6"), torch.zeros(1, 64, 8, 8))
    assert [lay.groups for lay in plan.layers] == [4, 64, 1]
    assert [lay.tiles.arrays for lay in plan.layers] == [8, 64, 8]  # 1024 inputs: 8 row tiles of 128
    lines = table(plan)
    assert lines[0].split()[-3:] == ["tiles", "arrays", "util"]
    assert "2x1 x4g" in lines[1] and lines[3].split()[-3:] == ["8x1", "8", "31.2%"]
    assert lines[-1].startswith("80 arrays of 128x128 (differential pairs), utilization")
    d = plan.to_dict()
    assert d["arrays"]["arrays"] == 80 and d["layers"][0]["tiles"]["row_tiles"] == 2 and d["layers"][0]["groups"] == 4


def test_a_profile_without_arrays_keeps_todays_plan_rows_and_table():
    plan = compile_plan([FoundWeight("l", "Gemm", "l.weight", (10, 512), 0)], load_profile("rram_4bit"))
    assert plan.layers[0].tiles is None and "arrays" not in plan.to_dict()
    assert "tiles" not in plan.layers[0].to_dict() and "tiles" not in table(plan)[0]
