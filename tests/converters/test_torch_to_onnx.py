"""torch -> float ONNX: both exporters keep BN unfused and torch names; the batch dimension is dynamic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nft_deploy.converters.graph_pass import plan_graph
from nft_deploy.converters.loaders import load_source
from nft_deploy.converters.torch_to_onnx import TorchExportConfig, torch_to_onnx

from nft_deploy.device_plan import differences
from nft_deploy.errors import ExportError
from nft_deploy.profiles import load_profile
from nft_deploy.training.crossbars import torch_plan


class ConvBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(3)
        self.fc = torch.nn.Linear(3 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))


def _net():
    torch.manual_seed(0)
    net = ConvBN()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    return net.eval()


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_exporter_keeps_batchnorm_names_and_a_dynamic_batch(exporter, tiny):
    net = _net()
    exp = torch_to_onnx(net, torch.rand(2, 1, 6, 6), TorchExportConfig(exporter=exporter))
    prof = load_profile("rram_4bit")
    assert exp.exporter == exporter
    assert differences(torch_plan(net, prof, torch.rand(2, 1, 6, 6)), plan_graph(exp.model, prof)) == []
    assert tiny.op_counts(exp.model)["BatchNormalization"] == 1
    np.testing.assert_array_equal(tiny.initializer(exp.model, "conv.weight"), net.conv.weight.detach().numpy())
    for batch in (1, 5):
        x = np.random.default_rng(batch).random((batch, 1, 6, 6), dtype=np.float32)
        (y,) = tiny.run(exp.model, {exp.model.graph.input[0].name: x})
        with torch.no_grad():
            np.testing.assert_allclose(y, net(torch.from_numpy(x)).numpy(), atol=1e-5)


class Tokens(torch.nn.Module):
    """Linear on a 3-D and a 4-D input: the dynamo exporter writes ``MatMul(x, val_N) + Add`` with ``val_N``
    a folded ``W.T``, and records the parameter it came from."""

    def __init__(self):
        super().__init__()
        self.mix = torch.nn.Linear(6, 5)
        self.head = torch.nn.Linear(5, 3)

    def forward(self, x):  # x (N, 1, 4, 6): mix on 4-D, head on 3-D
        return self.head(torch.relu(self.mix(x)).flatten(1, 2)).mean(1)


def test_a_linear_on_a_sequence_is_the_transposed_matmul_in_both_plans():
    torch.manual_seed(0)
    net, x = Tokens().eval(), torch.rand(2, 1, 4, 6)
    exp = torch_to_onnx(net, x, TorchExportConfig(exporter="dynamo"))
    prof = load_profile("rram_4bit")
    graph, ours = plan_graph(exp.model, prof), torch_plan(net, prof, x)
    assert differences(ours, graph) == []
    assert [(lay.name, lay.op, lay.shape, lay.out_axis) for lay in graph.mapped] == [
        ("mix", "MatMul", (6, 5), 1), ("head", "MatMul", (5, 3), 1)]
    rows = [[{k: v for k, v in lay.to_dict().items() if k != "node"} for lay in p.layers] for p in (ours, graph)]
    assert rows[0] == rows[1]  # and every row's noise (per-channel scale on the graph's output axis) alike


def test_plan_noise_and_worst_case_adc_find_a_renamed_weight():
    """``plan``'s noise/rms and ``--adc-range max`` read the weight under the plan's name (the float graph
    holds it as ``val_N``): the same noise/rms as torch's, and a worst case of rows x DAC range x max |W|."""
    from nft_deploy.calibration import calibrate
    from nft_deploy.planning import plan_with_noise

    torch.manual_seed(0)
    net, x = Tokens().eval(), torch.rand(2, 1, 4, 6)
    exp = torch_to_onnx(net, x, TorchExportConfig(exporter="dynamo"))
    graph_ratio = plan_with_noise(exp.model, "pcm_8bit")[1]
    torch_ratio = plan_with_noise(net, "pcm_8bit", input_shape=(1, 4, 6))[1]
    assert graph_ratio.keys() == torch_ratio.keys() == {"mix", "head"}
    for name in graph_ratio:
        assert graph_ratio[name] == pytest.approx(torch_ratio[name], rel=1e-6)
    ranges = calibrate(exp.model, load_profile("pcm_8bit"), x.numpy(), adc_range="max")
    dac, (adc,) = ranges["mix"]
    assert adc >= 6 * dac * float(net.mix.weight.abs().max()) * (1 - 1e-6)  # 6 rows


def test_plan_differences_name_a_weight_the_exporter_renamed():
    net = _net()
    exp = torch_to_onnx(net, torch.rand(2, 1, 6, 6), TorchExportConfig(exporter="torchscript"))
    for init in exp.model.graph.initializer:
        if init.name == "fc.weight":
            init.name = "onnx::Gemm_5"
    for node in exp.model.graph.node:
        node.input[:] = ["onnx::Gemm_5" if i == "fc.weight" else i for i in node.input]
    prof = load_profile("rram_4bit")
    assert differences(torch_plan(net, prof, torch.rand(2, 1, 6, 6)), plan_graph(exp.model, prof)) == [
        "fc (Gemm) mapped in training only", "onnx::Gemm_5 (Gemm) mapped in the graph only"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_file_loads_and_exports_with_its_input_shape(tmp_path, tiny):
    path = tmp_path / "net.ts"
    torch.jit.save(torch.jit.script(_net()), str(path))
    with pytest.raises(ExportError, match="--input-shape is required"):
        load_source(path)
    src = load_source(path, input_shape=(1, 6, 6))
    assert src.kind == "torchscript"
    exp = torch_to_onnx(src.module, torch.rand(2, 1, 6, 6))
    assert exp.exporter == "torchscript" and "conv.weight" in {i.name for i in exp.model.graph.initializer}


def test_bad_exporter_name_is_a_user_error():
    with pytest.raises(ExportError, match="exporter: must be one of"):
        torch_to_onnx(_net(), torch.rand(2, 1, 6, 6), TorchExportConfig(exporter="jit"))


def test_onnx_source_with_garbage_content_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ExportError, match="bad.onnx: not a valid ONNX model"):
        load_source(bad)
