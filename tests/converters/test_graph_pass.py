"""The driver: metadata, shared weights, read noise, DAC/ADC, constant-folding by ORT, refusals."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from nft_deploy.converters.report import META_REWRITTEN

from nft_deploy import __version__
from nft_deploy.chips import META_PLAN, META_PROFILE, META_SOURCE_SHA256, META_VERSION
from nft_deploy.device_plan import DevicePlan
from nft_deploy.errors import ExportError
from nft_deploy.export import insert_device_nodes
from nft_deploy.noise import NoiseModel, quantize_activation
from nft_deploy.profiles import load_profile

MLP = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,64] x, float[64,64] fc1_weight, float[10,64] fc2_weight) => (float[N,10] y)
{ h = Gemm <transB=1> (x, fc1_weight)
  r = Relu(h)
  y = Gemm <transB=1> (r, fc2_weight) }"""

SHARED = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,2,5,5] x, float[2,2,3,3] block_weight) => (float[N,2,5,5] y)
{ h = Conv <pads=[1,1,1,1]> (x, block_weight)
  y = Conv <pads=[1,1,1,1]> (h, block_weight) }"""


def _meta(model):
    return {p.key: p.value for p in model.metadata_props}


def test_metadata_records_profile_after_sigma_override_layers_rewritten_version_and_hash(tiny):
    model = tiny.make_model(MLP)
    before = model.SerializeToString()
    out, report = insert_device_nodes(model, "rram_4bit", sigma=0.25, source_sha256="abc123")
    assert model.SerializeToString() == before  # the input model is not modified
    meta = _meta(out)
    assert json.loads(meta[META_PROFILE]) == load_profile("rram_4bit").with_sigma(0.25).to_dict()
    assert meta[META_VERSION] == __version__ and meta[META_SOURCE_SHA256] == "abc123"
    assert DevicePlan.from_json(meta[META_PLAN]) == report.plan
    assert [(lay.name, lay.op, lay.shape) for lay in report.layers] == [("fc1", "Gemm", (64, 64)),
                                                                            ("fc2", "Gemm", (10, 64))]
    assert [r["layer"] for r in json.loads(meta[META_REWRITTEN])] == ["fc1", "fc2"]
    onnx.checker.check_model(out, full_check=True)


def test_shared_weight_is_one_layer_with_one_chip_input_feeding_both_nodes(tiny):
    out, report = insert_device_nodes(tiny.make_model(SHARED), "nft_reference")
    assert [lay.name for lay in report.layers] == ["block"] and len(report.rewritten) == 2
    assert [n.input[1] for n in out.graph.node if n.op_type == "Conv"] == ["nft/block/weight"] * 2
    assert [i.name for i in out.graph.input] == ["x", "nft.chip/block"]


def test_read_noise_is_redrawn_per_run_with_distinct_seeds_and_closed_form_std(tiny):
    model = tiny.make_model(MLP)
    prof = tiny.profile("nft_reference", programming={"sigma": 0.0}, read_noise={"sigma": 0.05})
    out, _ = insert_device_nodes(model, prof)
    seeds = [a.f for n in out.graph.node if n.op_type == "RandomNormalLike" for a in n.attribute if a.name == "seed"]
    assert len(seeds) == 2 and len(set(seeds)) == 2
    sess = ort.InferenceSession(_with_outputs(out, ["nft/fc1/weight"]), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 64), np.float32)
    w1, w2 = (sess.run(["nft/fc1/weight"], {"x": x})[0] for _ in range(2))
    assert not np.array_equal(w1, w2)
    w = tiny.initializer(model, "fc1.weight")
    z = (w1 - w) / np.abs(w).max()
    expected = NoiseModel(prof).read_std  # 4096 samples: sample std within ~3.5 sigma of 1/sqrt(2n)
    assert abs(z.std() / expected - 1) < 0.04 and abs(z.mean()) < 4 * expected / 64


def test_dac_and_adc_match_quantize_activation(tiny):
    model = tiny.make_model(MLP)
    prof = tiny.profile("nft_reference", programming={"sigma": 0.0}, io={"input_bits": 4, "output_bits": 5})
    out, report = insert_device_nodes(model, prof)
    x = np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)
    (y,) = tiny.run(out, {"x": x})
    w1, w2 = (tiny.initializer(model, f"fc{i}.weight").astype(np.float64) for i in (1, 2))
    h = quantize_activation(quantize_activation(x.astype(np.float64), 4) @ w1.T, 5)
    ref = quantize_activation(quantize_activation(np.maximum(h, 0), 4) @ w2.T, 5)
    np.testing.assert_allclose(y, ref, atol=1e-4)
    assert "Inserted | 2 Gemm" in report.summary()[0]


def test_fixed_chip_inputs_let_onnxruntime_fold_the_weight_subgraph(tiny, tmp_path):
    model = tiny.make_model(MLP)
    prof = tiny.profile("rram_4bit", read_noise={"sigma": 0.0})
    out, report = insert_device_nodes(model, prof)
    for name in report.chip_inputs:  # what an evaluator does for one chip
        shape = next(lay.shape for lay in report.layers if name in (lay.chip_input, lay.stuck_input))
        out.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(shape, np.float32), name))
    keep = [i for i in out.graph.input if i.name not in report.chip_inputs]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(out.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert not ops & {"Round", "Clip", "Div", "Add"}, ops


def test_constant_node_and_transposed_weights_are_mapped_by_tensor_name(tiny):
    text = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,4] x, float[3,4] raw) => (float[N,3] y, float[N,3] z)
{ k = Constant <value = float[4,3] {1,2,3,4,5,6,7,8,9,10,11,12}> ()
  y = MatMul(x, k)
  wt = Transpose(raw)
  z = MatMul(x, wt) }"""
    out, report = insert_device_nodes(tiny.make_model(text, constants=("raw",)), "nft_reference")
    assert [(lay.name, lay.shape, lay.out_axis) for lay in report.layers] == [("k", (4, 3), 1), ("wt", (4, 3), 1)]
    (y,) = tiny.run(out, {"x": np.eye(4, dtype=np.float32), "nft.chip/k": np.zeros((4, 3), np.float32),
                         "nft.chip/wt": np.zeros((4, 3), np.float32)}, ["y"])
    np.testing.assert_array_equal(y, np.arange(1, 13, dtype=np.float32).reshape(4, 3))


def test_nodes_that_reach_no_output_are_dropped_before_planning(tiny):
    """``graph.cleanup()``: a dead branch is neither planned (no chip input to draw) nor counted."""
    text = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,4] x, float[3,4] fc_weight, float[3,4] dead_weight) => (float[N,3] y)
{ y = Gemm <transB=1> (x, fc_weight)
  d = Gemm <transB=1> (x, dead_weight)
  unused = Relu(d) }"""
    out, report = insert_device_nodes(tiny.make_model(text), "nft_reference")
    assert [lay.name for lay in report.plan.layers] == ["fc"] and report.chip_inputs == ["nft.chip/fc"]
    assert report.passthrough == {} and tiny.op_counts(out)["Gemm"] == 1


@pytest.mark.parametrize("text, match", [
    ("""<ir_version: 9, opset_import: ["" : 18]>
g (float[N,4] x) => (float[N,4] y) { y = Relu(x) }""", "no mappable layer"),
    ("""<ir_version: 9, opset_import: ["" : 18]>
g (float[5,1,4] x, float[1,8,4] w_weight, float[1,8,2] r_weight) => (float[5,1,1,2] y)
{ y = RNN <hidden_size=2> (x, w_weight, r_weight) }""", "op type RNN carries weights"),
])
def test_models_the_pass_cannot_deploy_raise_a_clear_error(tiny, text, match):
    with pytest.raises(ExportError, match=match):
        insert_device_nodes(tiny.make_model(text), "rram_4bit")


def test_an_already_deployed_model_is_refused(tiny):
    out, _ = insert_device_nodes(tiny.make_model(MLP), "rram_4bit")
    with pytest.raises(ExportError, match="already CIM-deployed"):
        insert_device_nodes(out, "rram_4bit")


def _with_outputs(model, names):
    m = onnx.ModelProto.FromString(model.SerializeToString())
    m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    return m.SerializeToString()
