"""Conv handler: op counts per profile, numerics against NoiseModel.apply_chip, digital globs, fatal cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nft_deploy.chips import META_PLAN, META_SKIPPED
from nft_deploy.device_plan import DevicePlan
from nft_deploy.errors import ExportError
from nft_deploy.export import insert_device_nodes
from nft_deploy.noise import NoiseModel

TWO_CONVS = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,2,6,6] x, float[4,2,3,3] conv1_weight, float[4] bias, float[3,4,1,1] conv2_weight)
  => (float[N,3,6,6] y)
{ h = Conv <pads=[1,1,1,1]> (x, conv1_weight, bias)
  r = Relu(h)
  y = Conv (r, conv2_weight) }"""


def test_reference_profile_adds_one_mul_and_add_per_conv_and_leaves_relu(tiny):
    model = tiny.make_model(TWO_CONVS, constants=("bias",))
    out, report = insert_device_nodes(model, "nft_reference")
    assert tiny.op_counts(model) == {"Conv": 2, "Relu": 1}
    assert tiny.op_counts(out) == {"Conv": 2, "Relu": 1, "Mul": 2, "Add": 2}
    assert report.passthrough == {"Relu": 1}
    relu = next(n for n in out.graph.node if n.op_type == "Relu")
    assert list(relu.input) == ["h"] and list(relu.output) == ["r"]
    assert [lay.out_axis for lay in report.layers] == [0, 0]


def test_rram_4bit_inserts_quantization_variation_stuck_and_read_nodes(tiny):
    out, report = insert_device_nodes(tiny.make_model(TWO_CONVS, constants=("bias",)), "rram_4bit")
    per_layer = {"Div": 1, "Round": 1, "Clip": 1, "Mul": 5, "RandomNormalLike": 1, "Add": 3}
    assert tiny.op_counts(out) == {"Conv": 2, "Relu": 1, **{k: 2 * v for k, v in per_layer.items()}}
    assert report.chip_inputs == ["nft.chip/conv1", "nft.stuck/conv1", "nft.chip/conv2", "nft.stuck/conv2"]
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in out.graph.input}
    assert shapes["nft.chip/conv1"] == [4, 2, 3, 3] and shapes["nft.stuck/conv2"] == [3, 4, 1, 1]


@pytest.mark.parametrize("scale", ["per_layer", "per_channel"])
def test_deployed_conv_weight_equals_numpy_apply_chip(tiny, scale):
    model = tiny.make_model(TWO_CONVS, constants=("bias",))
    prof = tiny.profile("nft_reference", weights={"quantize": True, "bits": 4, "scale": scale})
    out, report = insert_device_nodes(model, prof)
    w = tiny.initializer(model, "conv1.weight")
    nm = NoiseModel.for_layer(prof, "conv1")
    draw = nm.draw_chip(w.shape, np.random.default_rng(3))
    feeds = {"x": np.zeros((1, 2, 6, 6), np.float32), "nft.chip/conv1": draw.normal.astype(np.float32),
             "nft.chip/conv2": np.zeros((3, 4, 1, 1), np.float32)}
    (got,) = tiny.run(out, feeds, ["nft/conv1/weight"])
    np.testing.assert_allclose(got, nm.apply_chip(w, draw, out_axis=0), rtol=0, atol=1e-6)


def test_digital_glob_leaves_that_conv_untouched_and_lists_it(tiny):
    model = tiny.make_model(TWO_CONVS, constants=("bias",))
    prof = tiny.profile("rram_4bit", mapping={"digital_layers": ("conv2*",)})
    out, report = insert_device_nodes(model, prof)
    conv2 = [n for n in out.graph.node if n.op_type == "Conv"][1]
    assert list(conv2.input) == ["r", "conv2.weight"]
    assert [lay.name for lay in DevicePlan.from_json(_meta(out, META_PLAN)).mapped] == ["conv1"]
    assert json.loads(_meta(out, META_SKIPPED)) == [{"node": conv2.name, "op_type": "Conv", "reason": "mapping.digital_layers 'conv2*'"}]


def test_conv_with_computed_weight_is_an_error_unless_digital(tiny):
    text = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,2,6,6] x, float[4,2,3,3] w) => (float[N,4,4,4] y) { y = Conv (x, w) }"""
    model = tiny.make_model(text)
    with pytest.raises(ExportError, match=r"'.*' \(Conv\): weight not constant.*mapping.digital_layers \[\"w\"\]"):
        insert_device_nodes(model, "nft_reference")
    prof = tiny.profile("nft_reference", mapping={"digital_layers": ("w",)})
    with pytest.raises(ExportError, match="no mappable layer"):
        insert_device_nodes(model, prof)


def _meta(model, key):
    return next(p.value for p in model.metadata_props if p.key == key)
