"""MatMul handler: constant weights with any name (machine names too), either operand; activation
products are skipped (not fatal) and listed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nft_deploy.chips import META_SKIPPED
from nft_deploy.errors import ExportError
from nft_deploy.export import insert_device_nodes
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import load_profile

ATTENTION_LIKE = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,4] x, float[4,6] proj_weight, float[4,4] mix) => (float[N,6] y, float[N,N] s, float[4,N] z)
{ y = MatMul(x, proj_weight)
  t = Transpose(x)
  s = MatMul(x, t)
  z = MatMul(mix, t) }"""


def test_matmul_with_machine_named_weight_is_mapped_with_out_axis_1(tiny):
    model = tiny.make_model(ATTENTION_LIKE, constants=("mix",))
    for init in model.graph.initializer:  # what older exporters write
        if init.name == "proj.weight":
            init.name = "onnx::MatMul_7"
    model.graph.node[0].input[1] = "onnx::MatMul_7"
    out, report = insert_device_nodes(model, "nft_reference")
    by_name = {lay.name: lay for lay in report.layers}
    assert by_name["onnx::MatMul_7"].out_axis == 1 and by_name["onnx::MatMul_7"].chip_input == "nft.chip/onnx::MatMul_7"
    assert by_name["mix"].out_axis == 0  # constant first operand: W @ X
    w = tiny.initializer(model, "onnx::MatMul_7")
    n = np.random.default_rng(0).standard_normal(w.shape)
    x = np.ones((2, 4), np.float32)
    feeds = {"x": x, "nft.chip/onnx::MatMul_7": n.astype(np.float32), "nft.chip/mix": np.zeros((4, 4), np.float32)}
    (y,) = tiny.run(out, feeds, ["y"])
    nm = NoiseModel(load_profile("nft_reference"))
    w_chip = w + nm.weight_std * np.abs(w).max() * n
    np.testing.assert_allclose(y, x @ w_chip, atol=1e-5)


def test_activation_matmul_is_skipped_listed_and_untouched(tiny):
    model = tiny.make_model(ATTENTION_LIKE, constants=("mix",))
    out, report = insert_device_nodes(model, "rram_4bit")
    node = next(n for n in out.graph.node if n.op_type == "MatMul" and list(n.input) == ["x", "t"])
    assert json.loads(next(p.value for p in out.metadata_props if p.key == META_SKIPPED)) == [
        {"node": node.name, "op_type": "MatMul", "reason": "weight not constant"}]
    assert "Skipped  | 1 MatMul (weight not constant)" in report.summary()
    assert tiny.op_counts(out)["MatMul"] == 3 and tiny.op_counts(out)["Transpose"] == 1


def test_matmul_not_in_profile_op_types_leaves_no_mappable_layer_and_says_why(tiny):
    model = tiny.make_model(ATTENTION_LIKE, constants=("mix",))
    prof = tiny.profile("rram_4bit", mapping={"op_types": ("Conv", "Gemm")})
    with pytest.raises(ExportError, match=r"no mappable layer.*3 MatMul \(op type MatMul not in mapping.op_types\)"):
        insert_device_nodes(model, prof)
