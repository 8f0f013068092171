"""Gemm handler: transB either way keeps the stored layout, out_axis follows it; QDQ style; numerics."""

from __future__ import annotations

import numpy as np
import pytest

from nft_deploy.export import insert_device_nodes
from nft_deploy.noise import NoiseModel


def _gemm(trans_b: int) -> str:
    wshape = "[3,5]" if trans_b else "[5,3]"
    return f"""<ir_version: 9, opset_import: ["" : 21]>
g (float[N,5] x, float{wshape} fc_weight, float[3] b) => (float[N,3] y)
{{ h = Gemm <transB={trans_b}> (x, fc_weight, b)
   y = Sigmoid(h) }}"""


@pytest.mark.parametrize("trans_b, out_axis", [(1, 0), (0, 1)])
def test_gemm_weight_keeps_its_stored_layout_and_out_axis(tiny, trans_b, out_axis):
    model = tiny.make_model(_gemm(trans_b), constants=("b",))
    prof = tiny.profile("pcm_8bit", read_noise={"sigma": 0.0}, io={"input_bits": None, "output_bits": None})
    out, report = insert_device_nodes(model, prof)
    (lay,) = report.layers
    w = tiny.initializer(model, "fc.weight")
    assert (lay.name, lay.weight, lay.shape, lay.out_axis) == ("fc", "fc.weight", w.shape, out_axis)
    gemm = next(n for n in out.graph.node if n.op_type == "Gemm")
    assert gemm.input[1] == "nft/fc/weight"
    nm = NoiseModel.for_layer(prof, "fc")  # per-channel scale: the axis matters
    draw = nm.draw_chip(w.shape, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    got, y = tiny.run(out, {"x": x, "nft.chip/fc": draw.normal.astype(np.float32)}, ["nft/fc/weight", "y"])
    ref_w = nm.apply_chip(w, draw, out_axis=out_axis)
    np.testing.assert_allclose(got, ref_w, atol=1e-6)
    ref_h = x @ (ref_w.T if trans_b else ref_w) + tiny.initializer(model, "b")
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-ref_h)), atol=1e-5)


def test_qdq_style_uses_quantize_dequantize_and_matches_round_clip_within_one_step(tiny):
    model = tiny.make_model(_gemm(1), constants=("b",))
    base = dict(read_noise={"sigma": 0.0}, io={"input_bits": None, "output_bits": None})
    rc, _ = insert_device_nodes(model, tiny.profile("pcm_8bit", **base))
    qdq, _ = insert_device_nodes(model, tiny.profile("pcm_8bit", weights={"quant_style": "qdq"}, **base))
    assert tiny.op_counts(qdq)["QuantizeLinear"] == 1 and tiny.op_counts(qdq)["DequantizeLinear"] == 1
    assert "Round" not in tiny.op_counts(qdq) and tiny.op_counts(rc)["Round"] == 1
    feeds = {"x": np.zeros((1, 5), np.float32), "nft.chip/fc": np.zeros((3, 5), np.float32)}
    (a,) = tiny.run(rc, feeds, ["nft/fc/weight"])
    (b,) = tiny.run(qdq, feeds, ["nft/fc/weight"])
    w = tiny.initializer(model, "fc.weight")
    step = np.abs(w).max(axis=1, keepdims=True) / 255
    assert np.all(np.abs(a - b) <= step * 1.001)
    assert np.mean(a == b) > 0.9


def test_gemm_with_activation_weight_is_an_error(tiny):
    from nft_deploy.errors import ExportError

    text = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,5] x, float[3,5] w) => (float[N,3] y) { y = Gemm <transB=1> (x, w) }"""
    with pytest.raises(ExportError, match=r"\(Gemm\): weight not constant"):
        insert_device_nodes(tiny.make_model(text), "rram_4bit")
