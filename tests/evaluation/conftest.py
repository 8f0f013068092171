"""Tiny CIM-deployed ONNX models built by hand, following the contract in nft_deploy/chips.py.

``deploy_by_hand`` rewrites every Conv/Gemm whose weight is an initializer into
``W + std_abs * nft.chip/<layer>`` (float weights, per-layer scale: the nft_reference maths), optionally
with a RandomNormalLike read-noise term; it stands in for the export pass so these tests do not depend on it.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nft_deploy.chips import CHIP_INPUT_PREFIX, META_PLAN, META_PROFILE
from nft_deploy.device_plan import DevicePlan, LayerPlan
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import load_profile


def deploy_by_hand(proto: onnx.ModelProto, profile, read_std: float = 0.0) -> onnx.ModelProto:
    profile = load_profile(profile)
    g = proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    layers, new_nodes = [], []
    for node in g.node:
        if node.op_type in ("Conv", "Gemm") and node.input[1] in inits:
            wname = node.input[1]
            layer = wname.removesuffix(".weight")
            w = inits[wname]
            nm = NoiseModel.for_layer(profile, layer)
            assert not nm.weights.quantize, "hand deployment models float weights only"
            chip = CHIP_INPUT_PREFIX + layer if nm.weight_std > 0 else None
            cur = wname
            if chip:
                std = float(nm.weight_std * np.abs(w).max())
                g.initializer.append(numpy_helper.from_array(np.array(std, np.float32), f"{layer}.std"))
                g.input.append(helper.make_tensor_value_info(chip, TensorProto.FLOAT, list(w.shape)))
                new_nodes += [helper.make_node("Mul", [chip, f"{layer}.std"], [f"{layer}.dw"]),
                              helper.make_node("Add", [cur, f"{layer}.dw"], [f"{layer}.chipw"])]
                cur = f"{layer}.chipw"
            if read_std:
                new_nodes += [helper.make_node("RandomNormalLike", [cur], [f"{layer}.rn"],
                                               scale=float(read_std * np.abs(w).max()), seed=1.0),
                              helper.make_node("Add", [cur, f"{layer}.rn"], [f"{layer}.readw"])]
                cur = f"{layer}.readw"
            node.input[1] = cur
            layers.append(LayerPlan(layer, node.op_type, wname, tuple(w.shape), 0, True, "mapped",
                                    profile.for_layer(layer), chip))
        new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    for k, v in ((META_PROFILE, json.dumps(profile.to_dict())), (META_PLAN, DevicePlan(profile, tuple(layers)).to_json())):
        proto.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(proto)
    return proto


def linear_proto(w: np.ndarray, b: np.ndarray | None = None) -> onnx.ModelProto:
    """logits = x @ W.T + b as one Gemm (weight ``fc.weight``)."""
    c, d = w.shape
    b = np.zeros(c, np.float32) if b is None else b
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["logits"], transB=1)], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", c])],
        [numpy_helper.from_array(w.astype(np.float32), "fc.weight"),
         numpy_helper.from_array(b.astype(np.float32), "fc.bias")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def conv_proto(seed: int = 0, channels: int = 4, classes: int = 3, side: int = 6) -> onnx.ModelProto:
    """Conv 3x3 (1 -> channels) -> Relu -> Flatten -> Gemm: a tiny CNN with random weights."""
    rng = np.random.default_rng(seed)
    wc = rng.normal(size=(channels, 1, 3, 3)).astype(np.float32)
    wf = rng.normal(size=(classes, channels * side * side)).astype(np.float32) * 0.3
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "conv.weight"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
         helper.make_node("Gemm", ["f", "fc.weight"], ["logits"], transB=1)], "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(wc, "conv.weight"), numpy_helper.from_array(wf, "fc.weight")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def blob_data(n: int = 120, side: int = 6, classes: int = 3, seed: int = 1):
    """Images whose class is the brightest third of the image, plus noise: learnable-looking, not trivial."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.random((n, 1, side, side)).astype(np.float32) * 0.5
    for i, c in enumerate(y):
        x[i, 0, 2 * c: 2 * c + 2] += 0.5
    return x, y.astype(np.int64)


@pytest.fixture
def tiny_cnn(tmp_path):
    """(path of a deployed tiny CNN at nft_reference sigma 0.3, (x, y) data for it)."""
    path = tmp_path / "cnn.cim.onnx"
    onnx.save(deploy_by_hand(conv_proto(), "nft_reference"), path)
    return path, blob_data()


@pytest.fixture
def helpers():
    """The builders above, for tests that make their own models."""
    return type("H", (), {"deploy": staticmethod(deploy_by_hand), "linear": staticmethod(linear_proto),
                          "conv": staticmethod(conv_proto), "data": staticmethod(blob_data)})
