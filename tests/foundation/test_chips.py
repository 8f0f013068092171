"""One programmed chip: per-layer seeds independent of order and sharding, draws per layer profile, feeds."""

from __future__ import annotations

import dataclasses
import json
import zlib

import numpy as np

from nft_deploy.chips import CHIP_INPUT_PREFIX, STUCK_INPUT_PREFIX, chip_feeds, draw_chip, layer_rng
from nft_deploy.device_plan import DevicePlan, LayerPlan
from nft_deploy.noise import ChipDraw, NoiseModel
from nft_deploy.profiles import load_profile, profile_from_dict


def layer(name, shape=(4, 3), stuck=False, chip=True, out_axis=0):
    return LayerPlan(name=name, op="Gemm", weight=f"{name}.weight", shape=shape, out_axis=out_axis, mapped=True,
                     reason="mapped", device=load_profile("nft_reference"),
                     chip_input=CHIP_INPUT_PREFIX + name if chip else None,
                     stuck_input=STUCK_INPUT_PREFIX + name if stuck else None)


def on(profile, layers):
    """The layers as ``profile`` resolves them (what compile_plan does)."""
    return [dataclasses.replace(lay, device=profile.for_layer(lay.name)) for lay in layers]


LAYERS = [layer("conv1", (6, 1, 3, 3)), layer("fc.0", (10, 20), out_axis=1), layer("fc.1", (2, 10))]


def test_layer_rng_is_a_pure_function_of_seed_chip_and_layer_name():
    a = layer_rng(7, 3, "fc.0").standard_normal(5)
    np.testing.assert_array_equal(a, layer_rng(7, 3, "fc.0").standard_normal(5))
    expected = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(3, zlib.crc32(b"fc.0"))))
    np.testing.assert_array_equal(a, expected.standard_normal(5))
    others = [layer_rng(8, 3, "fc.0"), layer_rng(7, 4, "fc.0"), layer_rng(7, 3, "fc.1")]
    for g in others:
        assert not np.allclose(a, g.standard_normal(5))


def test_chip_draws_do_not_depend_on_layer_order():
    p = load_profile("nft_reference")
    forward = draw_chip(on(p, LAYERS), {}, seed=1, chip=2)
    backward = draw_chip(on(p, LAYERS[::-1]), {}, seed=1, chip=2)
    alone = draw_chip(on(p, LAYERS[1:2]), {}, seed=1, chip=2)
    for name in forward:
        np.testing.assert_array_equal(forward[name].normal, backward[name].normal)
    np.testing.assert_array_equal(forward["fc.0"].normal, alone["fc.0"].normal)
    assert forward["fc.0"].normal.shape == (10, 20)


def test_chip_draws_do_not_depend_on_sharding_across_workers():
    p = load_profile("nft_reference")
    serial = [draw_chip(on(p, LAYERS), {}, seed=5, chip=c) for c in range(6)]
    shards = {c: draw_chip(on(p, LAYERS), {}, seed=5, chip=c) for c in (5, 3, 1)}  # a worker's share, out of order
    shards |= {c: draw_chip(on(p, LAYERS), {}, seed=5, chip=c) for c in (0, 2, 4)}
    for c in range(6):
        for name in serial[c]:
            np.testing.assert_array_equal(serial[c][name].normal, shards[c][name].normal)
    assert not np.allclose(serial[0]["conv1"].normal, serial[1]["conv1"].normal)


def test_chip_draw_uses_each_layers_override_and_weights_for_stuck_at():
    p = profile_from_dict({"schema_version": 1, "name": "o", "programming": {"sigma": 0.1},
                           "weights": {"bits": 4, "bits_per_cell": 2, "quantize": True},
                           "mapping": {"overrides": [{"layers": "fc.*", "stuck_at": {"zero_rate": 1.0}}]}})
    weights = {lay.weight: np.random.default_rng(0).normal(size=lay.shape) for lay in LAYERS}
    draws = draw_chip(on(p, LAYERS), weights, seed=0, chip=0)
    assert draws["conv1"].stuck_delta is None
    for name in ("fc.0", "fc.1"):
        nm = NoiseModel.for_layer(p, name)
        w = weights[f"{name}.weight"]
        out_axis = next(lay.out_axis for lay in LAYERS if lay.name == name)
        zero_noise = ChipDraw(np.zeros(w.shape), draws[name].stuck_delta)
        np.testing.assert_allclose(nm.apply_chip(w, zero_noise, out_axis), 0.0, atol=1e-12)  # all cells stuck at 0


def test_chip_feeds_are_float32_named_graph_inputs_and_sigma_factors_rescale_the_noise():
    p = load_profile("nft_reference")
    lays = [layer("a", (5, 4)), layer("b", (3, 5), stuck=True), layer("digital", (2, 3), chip=False)]
    draws = draw_chip(on(p, lays), {}, seed=3, chip=0)
    feeds = chip_feeds(lays, draws)
    assert set(feeds) == {"nft.chip/a", "nft.chip/b", "nft.stuck/b"}
    assert all(v.dtype == np.float32 for v in feeds.values())
    np.testing.assert_array_equal(feeds["nft.chip/a"], draws["a"].normal.astype(np.float32))
    assert not feeds["nft.stuck/b"].any() and feeds["nft.stuck/b"].shape == (3, 5)
    # a model exported at sigma 0.3, fed the factor 0.4/0.3, is the chip of the 0.4 profile
    scaled = chip_feeds(lays, draws, sigma_factors={"a": 0.4 / 0.3, "b": 0.4 / 0.3})
    w = np.random.default_rng(1).normal(size=(5, 4))
    via_feed = NoiseModel(p).apply_chip(w, ChipDraw(scaled["nft.chip/a"].astype(np.float64)))
    direct = NoiseModel(p.with_sigma(0.4)).apply_chip(w, draws["a"])
    np.testing.assert_allclose(via_feed, direct, rtol=1e-6)


def test_chip_feeds_carry_the_stuck_delta_when_there_is_one():
    p = load_profile("rram_4bit")
    lay = layer("s", (8, 8), stuck=True)
    w = np.random.default_rng(2).normal(size=(8, 8))
    draws = draw_chip(on(p, [lay]), {"s.weight": w}, seed=0, chip=1)
    np.testing.assert_array_equal(chip_feeds([lay], draws)["nft.stuck/s"], draws["s"].stuck_delta.astype(np.float32))


def test_device_plans_round_trip_through_json():
    plan = DevicePlan(load_profile("nft_reference"), tuple(LAYERS))
    text = plan.to_json()
    assert isinstance(json.loads(text)["layers"], list)
    back = DevicePlan.from_json(text)
    assert back == plan and all(isinstance(lay.shape, tuple) for lay in back.layers)
    assert [lay.device for lay in back.layers] == [plan.profile.for_layer(lay.name) for lay in LAYERS]



def test_stuck_at_layer_without_its_weight_is_named_in_the_error():
    import pytest

    with pytest.raises(ValueError, match="'fc.0'.*'fc.0.weight'"):
        draw_chip(on(load_profile("rram_4bit"), LAYERS[1:2]), {}, seed=0, chip=0)
