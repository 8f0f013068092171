"""A batch's activations in a worker's memory estimate: the per-sample peak of live activation bytes (ONNX
shape inference), linear in the batch size, the --batch-size hint where they are most of a worker, and the
estimate of before where shapes are unknown."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort
import pytest

from nft_deploy.errors import EvaluationError, Note
from nft_deploy.evaluation import local_backend as lb
from nft_deploy.evaluation.activations import activation_bytes
from nft_deploy.evaluation.runner import evaluate

SKIP_NET = """
<ir_version: 9, opset_import: ["" : 18]>
net (float[{batch},3,8,8] x) => (float[{batch},10] y)
<float[4,3,3,3] w = {{{w}}}, float[10,256] g = {{{g}}}>
{{
  c = Conv <pads = [1,1,1,1]> (x, w)
  r = Relu (c)
  a = Add (r, c)
  f = Flatten (a)
  y = Gemm <transB = 1> (f, g)
}}
"""


def _skip_net(batch="N") -> onnx.ModelProto:
    """Conv -> Relu -> Add(relu, conv) -> Flatten -> Gemm: the conv output stays live across the Relu."""
    return onnx.parser.parse_model(SKIP_NET.format(batch=batch, w=", ".join(["0.1"] * 108),
                                                   g=", ".join(["0.01"] * 2560)))


def _every_tensor(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each named tensor of the graph as ONNX Runtime computes it (all made graph outputs)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    for node in m.graph.node:
        m.graph.output.extend(onnx.ValueInfoProto(name=t) for t in node.output)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return {"x": x, **dict(zip(names, sess.run(names, {"x": x}), strict=True))}


def test_the_activation_term_is_the_peak_of_live_tensor_bytes_of_one_sample_counted_by_hand():
    model = _skip_net()
    t = {k: v.nbytes for k, v in _every_tensor(model, np.ones((1, 3, 8, 8), np.float32)).items()}
    by_hand = max(t["x"] + t["c"],  # Conv: its input and output; x is not read again
                  t["c"] + t["r"],  # Relu
                  t["c"] + t["r"] + t["a"],  # Add: the conv output still live for it
                  t["a"] + t["f"],  # Flatten
                  t["f"] + t["y"])  # Gemm: y, a graph output, stays to the end
    assert activation_bytes(model, ["x"]) == by_hand


def test_one_sample_whatever_batch_the_graph_declares_and_a_batch_scales_linearly():
    per_sample = activation_bytes(_skip_net(), ["x"])
    assert activation_bytes(_skip_net(batch="5"), ["x"]) == per_sample
    t5 = _every_tensor(_skip_net(batch="5"), np.ones((5, 3, 8, 8), np.float32))
    assert per_sample == (t5["c"].nbytes + t5["r"].nbytes + t5["a"].nbytes) // 5
    assert lb.activation_batch_bytes(64, per_sample) == 2 * lb.activation_batch_bytes(32, per_sample)
    assert lb.activation_batch_bytes(32, per_sample) == int(lb.ACTIVATION_FACTOR * 32 * per_sample)
    assert lb.worker_bytes(10**6, 5, "fold", lb.activation_batch_bytes(32, per_sample)) - lb.worker_bytes(
        10**6, 5, "fold") == lb.activation_batch_bytes(32, per_sample)


def test_an_exported_lenet5_is_resolved_through_torchs_flatten_and_holds_its_largest_layer():
    """torch's flatten (Shape -> Squeeze -> Reshape -> Concat -> Reshape) defeats ONNX's own inference;
    ONNX Runtime's symbolic inference resolves it. The figure holds at least conv1's input and output."""
    import torch

    from nft_deploy.evaluation.deployed import load_deployed
    from nft_deploy.export import export_model
    from nft_deploy.models import build_model

    torch.manual_seed(0)
    net = build_model("lenet5").eval()
    model = load_deployed(export_model(net, profile="rram_4bit", input_shape=(1, 28, 28)).model)
    x = torch.zeros(1, 1, 28, 28)
    conv1 = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert model.activation_bytes >= x.numel() * 4 + conv1(x).numel() * 4


def test_a_dynamic_dimension_other_than_the_batch_falls_back_to_the_estimate_without_activations():
    model = onnx.parser.parse_model('<ir_version: 9, opset_import: ["" : 18]>\n'
                                    "net (float[N,3,L] x) => (float[N,3,L] y) { y = Relu (x) }")
    assert activation_bytes(model, ["x"]) is None
    assert lb.activation_batch_bytes(256, None) == 0
    assert lb.worker_bytes(10**6, 5, "feed", lb.activation_batch_bytes(256, None)) == lb.worker_bytes(10**6, 5, "feed")


def test_a_graph_with_subgraphs_is_unknown_not_a_crash():
    model = onnx.parser.parse_model("""
<ir_version: 9, opset_import: ["" : 18]>
net (float[N,3] x, bool c) => (float[N,3] y)
{
  y = If (c) <then_branch = g1 () => (float[N,3] a) { a = Relu (x) },
              else_branch = g2 () => (float[N,3] b) { b = Neg (x) }>
}
""")
    assert activation_bytes(model, ["x"]) is None


def _fits(per_worker_rest: int, batch: lb.BatchShare, size: int, workers: int, available: int) -> bool:
    return workers * (per_worker_rest + batch.bytes * size // batch.size) <= available


def test_fit_workers_reduces_workers_and_names_a_batch_size_that_fits_them_all():
    batch = lb.BatchShare(256, 256 * 1000)  # 1000 bytes a sample: most of a worker
    per_worker = 56_000 + batch.bytes
    plan = lb.fit_workers(4, per_worker, 2 * per_worker + 10, "fold", True, batch)
    assert plan.workers == 2
    n = int(plan.note.split("--batch-size ")[1].split()[0])
    assert _fits(56_000, batch, n, 4, 2 * per_worker + 10) and not _fits(56_000, batch, n + 1, 4, 2 * per_worker + 10)


def test_a_worker_that_does_not_fit_names_a_smaller_batch_size_when_activations_dominate():
    batch = lb.BatchShare(256, 256 * 1000)
    per_worker = 56_000 + batch.bytes
    with pytest.raises(EvaluationError, match=r"--strategy feed .*, a smaller --batch-size 100 \(a batch of 256"):
        lb.fit_workers(1, per_worker, 56_000 + 100_500, "fold", True, batch)
    small = lb.BatchShare(256, 1000)  # activations a small part: the hint would not help, so none
    with pytest.raises(EvaluationError) as e:
        lb.fit_workers(1, 10**6 + small.bytes, 10**5, "fold", True, small)
    assert "--batch-size" not in str(e.value)
    assert "--batch-size" not in lb.fit_workers(4, 10**6, 2 * 10**6, "fold", True, small).note


def test_evaluate_counts_the_batch_and_says_batch_size_where_it_does_not_fit(tiny_cnn, monkeypatch):
    """The runner hands the model's per-sample activations and the batch to the local backend."""
    from nft_deploy.evaluation.deployed import load_deployed

    path, data = tiny_cnn
    mib = 2**20  # this model's activations made 1 MiB a sample: most of a worker
    monkeypatch.setattr(lb, "ACTIVATION_FACTOR", mib / load_deployed(str(path)).activation_bytes)
    monkeypatch.setattr(lb, "available_bytes", lambda: lb.RUNTIME_BYTES + 50 * mib)
    with pytest.raises(EvaluationError, match=r"--workers: one worker needs .* a smaller --batch-size \d+"):
        evaluate(path, data, chips=2, workers=1, strategy="fold", batch_size=len(data[1]), quiet=True)
    monkeypatch.setattr(lb, "available_bytes", lambda: 2 * lb.RUNTIME_BYTES + 100 * mib)
    with pytest.warns(Note, match=r"running 1 \(--batch-size \d+ would fit all 2\)"):
        evaluate(path, data, chips=2, workers=2, strategy="fold", batch_size=100, quiet=True)
