"""A model "from elsewhere": a small MLP fitted with plain numpy (least squares on random features) and
written as ONNX by hand, MatMul weights with machine names. nft-deploy never saw its training."""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nft_deploy.data import load_data

data = load_data("mnist-5k")
x, y = data.x_train.reshape(len(data.x_train), -1), data.y_train
rng = np.random.default_rng(0)
w1 = rng.standard_normal((784, 256)).astype(np.float32) / 28
h = np.maximum(x @ w1, 0)
w2 = np.linalg.lstsq(h, np.eye(10)[y], rcond=None)[0].astype(np.float32)

graph = helper.make_graph(
    [helper.make_node("Flatten", ["image"], ["flat"]),
     helper.make_node("MatMul", ["flat", "onnx::MatMul_17"], ["h0"]),
     helper.make_node("Relu", ["h0"], ["h1"]),
     helper.make_node("MatMul", ["h1", "onnx::MatMul_18"], ["logits"])],
    "foreign_mlp",
    [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
    [numpy_helper.from_array(w1, "onnx::MatMul_17"), numpy_helper.from_array(w2, "onnx::MatMul_18")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
print(f"wrote {sys.argv[1]}: test accuracy {np.mean((np.maximum(data.x_test.reshape(1000, -1) @ w1, 0) @ w2).argmax(1) == data.y_test):.3f}")
