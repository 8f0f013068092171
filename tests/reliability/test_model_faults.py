"""Hostile MODEL and CHECKPOINT inputs through the CLI: one ``Error:`` line (exit 1, no traceback, no output
file) or, where the input is legitimate, the right answer.

The fault matrix runs every faulty input through ``export -o``, ``plan`` and ``evaluate``; the legitimate
inputs (an all-zero layer, symbolic height and width, a weight computed from constants) are checked
against the numbers they must give. Models are tiny: a hand-built ONNX CNN and a quarter-width LeNet-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from nft_deploy.converters.validate import MAX_OPSET, MIN_OPSET
from onnx import TensorProto, helper, numpy_helper

from nft_deploy.checkpoint import save_checkpoint
from nft_deploy.cli import main
from nft_deploy.models import build_model

SIDE, CLASSES = 6, 3
LENET = {"name": "lenet5", "kwargs": {"width": 0.25}}


# ---------------------------------------------------------------- tiny models


def cnn(*, conv_w=None, fc_w=None, in_shape=("N", 1, SIDE, SIDE), opset=17, weight_nodes=(), extra_inits=(),
        extra_inputs=(), conv_input="conv.weight") -> onnx.ModelProto:
    """Conv 3x3 (1 -> 4, pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm (4 -> 3): any H and W."""
    rng = np.random.default_rng(0)
    conv_w = rng.normal(size=(4, 1, 3, 3)).astype(np.float32) if conv_w is None else conv_w
    fc_w = rng.normal(size=(CLASSES, 4)).astype(np.float32) if fc_w is None else fc_w
    nodes = [*weight_nodes,
             helper.make_node("Conv", ["x", conv_input], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc.weight"], ["logits"], transB=1, name="fc")]
    inits = [numpy_helper.from_array(fc_w, "fc.weight"), *extra_inits]
    if conv_input == "conv.weight":
        inits.append(numpy_helper.from_array(conv_w, "conv.weight"))
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape),
                                         *extra_inputs],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def save_onnx(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def lenet(width: float = 0.25, arch: str = "lenet5", poison=None) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(arch, width=width)
    if poison is not None:
        with torch.no_grad():
            model.fc1.weight[0, 0] = poison
    return model


def save_ckpt(path: Path, model: torch.nn.Module, arch=LENET) -> Path:
    save_checkpoint(path, model=model, arch=arch, profile=None, method={"name": "plain"}, input_shape=(1, 28, 28))
    return path


def cut(path: Path, name: str, keep: float) -> Path:
    data = path.read_bytes()
    out = path.with_name(name)
    out.write_bytes(data[: int(len(data) * keep)])
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A good checkpoint, a good float ONNX model and data for each (28x28 and 6x6)."""
    d = tmp_path_factory.mktemp("base")
    rng = np.random.default_rng(1)
    for name, side in (("mnist.npz", 28), ("small.npz", SIDE)):
        x = rng.random((12, 1, side, side), dtype=np.float32)
        y = (np.arange(12) % CLASSES).astype(np.int64)
        np.savez(d / name, x=x, y=y, x_test=x, y_test=y)
    return {"dir": d, "ckpt": save_ckpt(d / "good.pt", lenet()), "onnx": save_onnx(cnn(), d / "good.onnx")}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line(res, *wanted: str):
    """Exit 1, exactly one ``Error:`` line holding every ``wanted`` text, no traceback."""
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    for text in wanted:
        assert text in errors[0], errors[0]


# ---------------------------------------------------------------- the fault matrix

def _ckpt_half(d, b):
    return cut(b["ckpt"], "half.pt", 0.5)


def _ckpt_empty(d, b):
    (d / "empty.pt").write_bytes(b"")
    return d / "empty.pt"


def _onnx_half(d, b):
    return cut(b["onnx"], "half.onnx", 0.5)


def _onnx_empty(d, b):
    (d / "empty.onnx").write_bytes(b"")
    return d / "empty.onnx"


def _ckpt_wider(d, b):  # says width 0.25, holds width 0.5
    return save_ckpt(d / "wider.pt", lenet(0.5))


def _ckpt_other_arch(d, b):  # says lenet5, holds vgg8
    return save_ckpt(d / "vgg.pt", build_model("vgg8", width=0.125))


def _ckpt_nan(d, b):
    return save_ckpt(d / "nan.pt", lenet(poison=float("nan")))


def _ckpt_inf(d, b):
    return save_ckpt(d / "inf.pt", lenet(poison=float("-inf")))


def _onnx_poisoned(value):
    def make(d, b):
        w = np.random.default_rng(0).normal(size=(4, 1, 3, 3)).astype(np.float32)
        w[1, 0, 2, 2] = value
        return save_onnx(cnn(conv_w=w), d / "poisoned.onnx")
    return make


def _onnx_opset(opset):
    def make(d, b):
        return save_onnx(cnn(opset=opset), d / f"opset{opset}.onnx")
    return make


def _onnx_no_shape(d, b):
    return save_onnx(cnn(in_shape=None), d / "noshape.onnx")


def _onnx_weight_from_input(d, b):
    return save_onnx(cnn(conv_input="w_in", extra_inputs=[helper.make_tensor_value_info("w_in", TensorProto.FLOAT,
                                                                                         [4, 1, 3, 3])]),
                     d / "inputw.onnx")


def _onnx_weight_times_input(d, b):  # Conv weight = initializer * a graph input (a runtime scale)
    return save_onnx(cnn(conv_input="wm", weight_nodes=[helper.make_node("Mul", ["w0", "s"], ["wm"])],
                         extra_inits=[numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w0")],
                         extra_inputs=[helper.make_tensor_value_info("s", TensorProto.FLOAT, [])]),
                     d / "scaledw.onnx")


TRUNCATED = "truncated or corrupt"
FAULTS = {
    # name: (builder, data set, [(command, wanted texts)]); "*" = export, plan and evaluate alike
    "checkpoint cut in half": (_ckpt_half, "mnist.npz", {"*": ("half.pt", TRUNCATED)}),
    "empty checkpoint": (_ckpt_empty, "mnist.npz", {"*": ("empty.pt", "not a checkpoint")}),
    "onnx cut in half": (_onnx_half, "small.npz", {"*": ("half.onnx", TRUNCATED)}),
    "empty onnx": (_onnx_empty, "small.npz", {"*": ("empty.onnx", "empty file")}),
    "checkpoint wider than its arch": (_ckpt_wider, "mnist.npz", {"*": (
        "wider.pt", "state_dict does not match", "shape mismatches", "conv1.weight (3, 1, 5, 5) vs (2, 1, 5, 5)",
        "and 6 more")}),
    "checkpoint of another arch": (_ckpt_other_arch, "mnist.npz", {"*": (
        "vgg.pt", "missing keys: conv1.weight", "unexpected keys: block1.0.weight")}),
    "NaN weight in checkpoint": (_ckpt_nan, "mnist.npz", {"*": ("nan.pt", "state_dict['fc1.weight']", "1 NaN")}),
    "Inf weight in checkpoint": (_ckpt_inf, "mnist.npz", {"*": ("inf.pt", "state_dict['fc1.weight']", "1 Inf")}),
    "NaN onnx initializer": (_onnx_poisoned(np.nan), "small.npz", {"*": (
        "poisoned.onnx", "initializer 'conv.weight'", "1 NaN", "[1, 0, 2, 2]")}),
    "Inf onnx initializer": (_onnx_poisoned(np.inf), "small.npz", {"*": (
        "poisoned.onnx", "initializer 'conv.weight'", "1 Inf")}),
    "opset too old": (_onnx_opset(9), "small.npz", {"*": ("opset9.onnx", "opset 9", f"{MIN_OPSET}..{MAX_OPSET}")}),
    "opset too new": (_onnx_opset(MAX_OPSET + 2), "small.npz", {"*": (
        f"opset{MAX_OPSET + 2}.onnx", f"{MIN_OPSET}..{MAX_OPSET}")}),
    "input without a shape": (_onnx_no_shape, "small.npz", {"*": ("noshape.onnx", "'x' has no shape",
                                                                  "fixed input shape")}),
    # plan shows such a layer as a digital row (test_unmappable_weight_is_a_digital_row_in_plan)
    "conv weight is a graph input": (_onnx_weight_from_input, "small.npz", {
        "export": ("node 'conv' (Conv): weight not constant", "mapping.digital_layers"),
        "evaluate": ("node 'conv' (Conv): weight not constant",)}),
    "conv weight scaled by a graph input": (_onnx_weight_times_input, "small.npz", {
        "export": ("node 'conv' (Conv): weight not constant",), "evaluate": ("weight not constant",)}),
}


def _commands(path: Path, out: Path, data: Path):
    return {"export": ["export", path, "-p", "rram_4bit", "-o", out],
            "plan": ["plan", path, "-p", "rram_4bit"],
            "evaluate": ["evaluate", path, "--profile", "rram_4bit", "--data", data, "--chips", 2, "--quiet",
                         "--json", out.with_suffix(".json")]}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_gives_one_line_and_no_output(fault, base, tmp_path):
    build, data, wanted = FAULTS[fault]
    path = build(tmp_path, base)
    out = tmp_path / "out" / "model.cim.onnx"
    for cmd, args in _commands(path, out, base["dir"] / data).items():
        texts = wanted.get(cmd, wanted.get("*"))
        if texts is None:
            continue
        assert_one_line(run(*args), *texts)
        assert not out.exists() and not out.with_suffix(".json").exists(), cmd
        assert not out.parent.exists() or not list(out.parent.iterdir()), list(out.parent.iterdir())


def test_plain_state_dict_of_another_model_lists_a_few_keys(base, tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(lenet().state_dict(), path)
    out = tmp_path / "o.onnx"
    for cmd in (["export", path, "-p", "rram_4bit", "-o", out], ["plan", path, "-p", "rram_4bit"]):
        res = run(*cmd, "--model", "vgg8", "--width", "0.125")
        assert_one_line(res, "sd.pt", "--model vgg8", "missing keys: block1.0.weight", "and 33 more",
                        "unexpected keys: conv1.weight")
        assert len(res.output) < 600
    assert not out.exists()


def test_unmappable_weight_is_a_digital_row_in_plan(tmp_path):
    path = _onnx_weight_from_input(tmp_path, None)
    res = run("plan", path, "-p", "rram_4bit", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)["layers"]}
    assert rows["w_in"]["mapped"] is False and rows["w_in"]["op"] == "Conv"
    assert rows["w_in"]["reason"].startswith("weight not constant: cannot be mapped")
    assert rows["fc"]["mapped"] is True
    table = run("plan", path, "-p", "rram_4bit")
    assert table.exit_code == 0 and "digital: weight not constant" in table.output
    # kept digital by the profile, the same model exports and runs: the conv stays float
    prof = tmp_path / "p.json"
    from nft_deploy.profiles import load_profile

    doc = load_profile("rram_4bit").to_dict()
    doc["name"] = "rram_digital_conv"
    doc["mapping"]["digital_layers"] = ["w_in"]
    prof.write_text(json.dumps(doc))
    res = run("export", path, "-p", prof, "-o", tmp_path / "ok.onnx")
    assert res.exit_code == 0, res.output
    assert "w_in" in res.output and "digital: mapping.digital_layers" in res.output


def test_deployed_model_with_nan_weight_is_refused_by_evaluate(base, tmp_path):
    out = tmp_path / "good.cim.onnx"
    assert run("export", base["onnx"], "-p", "nft_reference", "-o", out).exit_code == 0
    model = onnx.load(out)
    for init in model.graph.initializer:
        if init.name == "fc.weight":
            w = numpy_helper.to_array(init).copy()
            w[0, 0] = np.nan
            init.CopyFrom(numpy_helper.from_array(w, "fc.weight"))
    save_onnx(model, tmp_path / "bad.cim.onnx")
    res = run("evaluate", tmp_path / "bad.cim.onnx", "--data", base["dir"] / "small.npz", "--chips", 2, "--quiet")
    assert_one_line(res, "bad.cim.onnx", "initializer 'fc.weight'", "NaN")


# ---------------------------------------------------------------- legitimate inputs: the right answer


def _session(model: onnx.ModelProto, extra_outputs=()):
    m = onnx.ModelProto.FromString(model.SerializeToString())
    m.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in extra_outputs)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _chip_feeds(model: onnx.ModelProto, seed: int = 0, stuck: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in model.graph.input:
        if i.name.startswith("nft."):
            shape = [d.dim_value for d in i.type.tensor_type.shape.dim]
            draw = rng.normal(size=shape) if i.name.startswith("nft.chip/") or stuck else np.zeros(shape)
            feeds[i.name] = draw.astype(np.float32)
    return feeds


@pytest.mark.parametrize("profile", ["rram_4bit", "pcm_8bit", "rram_state_dependent"])
def test_all_zero_layer_stays_zero(base, tmp_path, profile):
    """An all-zero conv and an all-zero output channel of the FC: zero under every chip draw, finite outputs."""
    fc = np.random.default_rng(0).normal(size=(CLASSES, 4)).astype(np.float32)
    fc[1] = 0.0
    src = save_onnx(cnn(conv_w=np.zeros((4, 1, 3, 3), np.float32), fc_w=fc), tmp_path / "zero.onnx")
    out = tmp_path / "zero.cim.onnx"
    res = run("export", src, "-p", profile, "-o", out)
    assert res.exit_code == 0, res.output
    plan = json.loads(run("plan", src, "-p", profile, "--json").output)
    assert all(r["mapped"] for r in plan["layers"]), plan
    model = onnx.load(out)
    x = np.random.default_rng(2).random((5, 1, SIDE, SIDE), dtype=np.float32)
    names = [f"nft/{n}/weight" for n in ("conv", "fc") if f"nft/{n}/weight" in {
        o for node in model.graph.node for o in node.output}]
    sess = _session(model, names)
    for seed in range(3):
        logits, *weights = sess.run(["logits", *names], {"x": x, **_chip_feeds(model, seed)})
        assert np.isfinite(logits).all()
        got = dict(zip(names, weights, strict=True))
        if "nft/conv/weight" in got:
            assert np.abs(got["nft/conv/weight"]).max() <= 1e-25  # zero stays zero (ZERO_SCALE = 1e-30)
        if "nft/fc/weight" in got and plan["layers"][1].get("scale") == "per_channel":
            assert np.abs(got["nft/fc/weight"][1]).max() <= 1e-25
        # the zero conv gives zero features, so every logit is zero (no bias), whatever the chip
        np.testing.assert_allclose(logits, 0.0, atol=1e-6)
    res = run("evaluate", out, "--data", base["dir"] / "small.npz", "--chips", 3, "--quiet", "--json",
              tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "r.json").read_text())
    assert "nan" not in json.dumps(summary).lower()


def test_all_zero_layer_checkpoint_exports_plans_and_evaluates(base, tmp_path):
    model = lenet()
    with torch.no_grad():
        model.conv2.weight.zero_()
    ckpt = save_ckpt(tmp_path / "zero.pt", model)
    out = tmp_path / "zero.cim.onnx"
    assert (res := run("export", ckpt, "-p", "rram_4bit", "-o", out, "--exporter", "torchscript")).exit_code == 0, \
        res.output
    plan = json.loads(run("plan", ckpt, "-p", "rram_4bit", "--json").output)
    assert {r["name"]: r["mapped"] for r in plan["layers"]}["conv2"] is True
    deployed = onnx.load(out)
    x = np.random.default_rng(3).random((4, 1, 28, 28), dtype=np.float32)
    sess = _session(deployed, ["nft/conv2/weight"])
    logits, w = sess.run(["logits", "nft/conv2/weight"], {"x": x, **_chip_feeds(deployed, 1)})
    assert np.abs(w).max() <= 1e-25 and np.isfinite(logits).all()
    res = run("evaluate", out, "--data", base["dir"] / "mnist.npz", "--chips", 2, "--quiet")
    assert res.exit_code == 0, res.output


def test_symbolic_height_and_width_work_and_match_the_static_model(base, tmp_path):
    """N x 1 x H x W: the pass (with DAC/ADC, which need only the rank) gives the static model's numbers."""
    outs = {}
    for tag, shape in (("static", ("N", 1, SIDE, SIDE)), ("dynamic", ("N", 1, "H", "W"))):
        src = save_onnx(cnn(in_shape=shape), tmp_path / f"{tag}.onnx")
        outs[tag] = tmp_path / f"{tag}.cim.onnx"
        res = run("export", src, "-p", "pcm_8bit", "-o", outs[tag])
        assert res.exit_code == 0, res.output
    static, dynamic = onnx.load(outs["static"]), onnx.load(outs["dynamic"])
    x = np.random.default_rng(4).random((3, 1, SIDE, SIDE), dtype=np.float32)
    feeds = _chip_feeds(static, 5, stuck=True)
    a = _session(static).run(["logits"], {"x": x, **feeds})[0]
    b = _session(dynamic).run(["logits"], {"x": x, **feeds})[0]
    np.testing.assert_array_equal(a, b)
    bigger = np.random.default_rng(6).random((2, 1, 9, 11), dtype=np.float32)
    c = _session(dynamic).run(["logits"], {"x": bigger, **feeds})[0]
    assert c.shape == (2, CLASSES) and np.isfinite(c).all()
    res = run("evaluate", outs["dynamic"], "--data", base["dir"] / "small.npz", "--chips", 2, "--quiet")
    assert res.exit_code == 0, res.output


def test_weight_computed_from_constants_is_folded_and_mapped(base, tmp_path):
    """Conv weight = Mul(W, 2): constant-folded into one weight named after the product ('wm') and mapped;
    with every chip input zero and float weights the deployed model equals the float one."""
    w = np.random.default_rng(7).normal(size=(4, 1, 3, 3)).astype(np.float32)
    src = save_onnx(cnn(conv_input="wm", weight_nodes=[helper.make_node("Mul", ["w0", "two"], ["wm"])],
                        extra_inits=[numpy_helper.from_array(w, "w0"),
                                     numpy_helper.from_array(np.array(2.0, np.float32), "two")]),
                    tmp_path / "mulw.onnx")
    plan = json.loads(run("plan", src, "-p", "nft_reference", "--json").output)
    assert {r["name"]: (r["mapped"], r["shape"]) for r in plan["layers"]} == {"wm": (True, [4, 1, 3, 3]),
                                                                             "fc": (True, [CLASSES, 4])}
    out = tmp_path / "mulw.cim.onnx"
    assert (res := run("export", src, "-p", "nft_reference", "-o", out)).exit_code == 0, res.output
    deployed = onnx.load(out)
    x = np.random.default_rng(8).random((3, 1, SIDE, SIDE), dtype=np.float32)
    zeros = {k: np.zeros_like(v) for k, v in _chip_feeds(deployed).items()}
    got = _session(deployed).run(["logits"], {"x": x, **zeros})[0]
    want = _session(onnx.load(src)).run(["logits"], {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    res = run("evaluate", out, "--data", base["dir"] / "small.npz", "--chips", 2, "--quiet")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("profile", ["rram_4bit", "pcm_8bit"])  # read noise, DAC/ADC, per-channel scales
def test_supported_opset_bounds_run_in_onnx_runtime(base, tmp_path, profile):
    """MIN_OPSET and MAX_OPSET are real: the tiny model deployed at each runs in ONNX Runtime."""
    for opset in (MIN_OPSET, MAX_OPSET):
        src = save_onnx(cnn(opset=opset), tmp_path / f"o{opset}.onnx")
        out = tmp_path / f"o{opset}.cim.onnx"
        res = run("export", src, "-p", profile, "-o", out)
        assert res.exit_code == 0, res.output
        model = onnx.load(out)
        x = np.random.default_rng(0).random((2, 1, SIDE, SIDE), dtype=np.float32)
        logits = _session(model).run(["logits"], {"x": x, **_chip_feeds(model)})[0]
        assert logits.shape == (2, CLASSES) and np.isfinite(logits).all()
