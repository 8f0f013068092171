"""export_model as a Python API: output naming, in-memory sources, QDQ opset choice, corrupt files."""

from __future__ import annotations

import dataclasses

import onnx
import pytest
import torch

from nft_deploy.errors import CheckpointError, ExportError
from nft_deploy.export import export_model, insert_device_nodes
from nft_deploy.profiles import load_profile


def _qdq_profile():
    p = load_profile("pcm_8bit")
    return dataclasses.replace(p, weights=dataclasses.replace(p.weights, quant_style="qdq"))


def test_default_output_names_follow_the_input_stem(tmp_path):
    src = tmp_path / "net.onnx"
    torch.manual_seed(0)
    float_model = export_model(torch.nn.Linear(6, 3), profile=None, no_device=True, input_shape=(6,)).model
    onnx.save(float_model, str(src))
    res = export_model(src, profile="rram_4bit")
    assert res.output == tmp_path / "net.cim.onnx" and res.output.is_file() and res.exporter == "none"
    assert export_model(src, profile=None, no_device=True).output == tmp_path / "net.float.onnx"


def test_in_memory_module_without_output_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = export_model(torch.nn.Linear(6, 3), profile="nft_reference", input_shape=(6,))
    assert res.output is None and list(tmp_path.iterdir()) == []
    assert [lay.name for lay in res.report.layers] == ["weight"]  # a bare Linear: the torch name is "weight"


def test_qdq_with_8_bit_weights_exports_at_opset_21_and_refuses_an_older_onnx():
    res = export_model(torch.nn.Linear(6, 3), profile=_qdq_profile(), input_shape=(6,))
    assert [o.version for o in res.model.opset_import if o.domain == ""] == [21]
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in res.model.graph.node}
    old = export_model(torch.nn.Linear(6, 3), profile=None, no_device=True, input_shape=(6,), opset=20).model
    with pytest.raises(ExportError, match=r"needs int16 QuantizeLinear.*--opset 21"):
        insert_device_nodes(old, _qdq_profile())


def test_corrupt_pickle_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02garbage that is not a pickle")
    with pytest.raises(CheckpointError, match="bad.pt: not a"):
        export_model(bad, profile="ideal")
