"""ConvTranspose handler: weight [C_in, C_out, k, k] keeps its layout, output channels on axis 1."""

from __future__ import annotations

import numpy as np

from nft_deploy.export import insert_device_nodes
from nft_deploy.noise import NoiseModel

UPSAMPLE = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,2,3,3] x, float[2,5,2,2] up_weight) => (float[N,5,6,6] y)
{ y = ConvTranspose <strides=[2,2]> (x, up_weight) }"""


def test_conv_transpose_uses_out_axis_1_for_per_channel_scale(tiny):
    model = tiny.make_model(UPSAMPLE)
    prof = tiny.profile("pcm_8bit", read_noise={"sigma": 0.0}, io={"input_bits": None, "output_bits": None})
    out, report = insert_device_nodes(model, prof)
    (lay,) = report.layers
    assert (lay.op, lay.shape, lay.out_axis) == ("ConvTranspose", (2, 5, 2, 2), 1)
    assert tiny.op_counts(out) == {"ConvTranspose": 1, "Div": 1, "Round": 1, "Clip": 1, "Mul": 3, "Add": 1}
    w = tiny.initializer(model, "up.weight")
    nm = NoiseModel.for_layer(prof, "up")
    draw = nm.draw_chip(w.shape, np.random.default_rng(0))
    feeds = {"x": np.zeros((1, 2, 3, 3), np.float32), "nft.chip/up": draw.normal.astype(np.float32)}
    (got,) = tiny.run(out, feeds, ["nft/up/weight"])
    np.testing.assert_allclose(got, nm.apply_chip(w, draw, out_axis=1), atol=1e-6)
    wrong_axis = nm.apply_chip(w, draw, out_axis=0)
    assert np.abs(got - wrong_axis).max() > 1e-3  # the axis is not a no-op


UP_THEN_CONV = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,2,3,3] x, float[2,5,2,2] up_weight, float[5,5,1,1] head_weight) => (float[N,5,6,6] y)
{ u = ConvTranspose <strides=[2,2]> (x, up_weight)
  y = Conv(u, head_weight) }"""


def test_conv_transpose_digital_glob_untouched(tiny):
    model = tiny.make_model(UP_THEN_CONV)
    out, report = insert_device_nodes(model, tiny.profile("rram_4bit", mapping={"digital_layers": ("up",)}))
    ct = next(n for n in out.graph.node if n.op_type == "ConvTranspose")
    assert list(ct.input) == ["x", "up.weight"] and [lay.name for lay in report.layers] == ["head"]
    assert [(s.op_type, s.reason) for s in report.skipped] == [("ConvTranspose", "mapping.digital_layers 'up'")]
