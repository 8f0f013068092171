"""Programming a chip layer by layer gives the numbers of the whole deployed graph run at once."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from nft_deploy.chips import chip_feeds, draw_chip
from nft_deploy.evaluation.deployed import clean_proto, load_deployed
from nft_deploy.evaluation.programming import InferenceGraph, Programmer
from nft_deploy.evaluation.shards import READ_NOISE_KEY
from nft_deploy.export import export_model


def tiny_deployed(profile: str):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 5))
    return load_deployed(export_model(net.eval(), profile=profile, input_shape=(1, 8, 8)).model)


def whole_graph(proto: onnx.ModelProto, outputs: list[str]) -> ort.InferenceSession:
    """Reference: one session of the full deployed graph (chip inputs as graph inputs), ``outputs`` exposed."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    model.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outputs)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("profile", ["nft_reference", "rram_4bit", "pcm_8bit"])
def test_programmed_weights_equal_the_whole_graph_fed_the_same_chip(profile):
    model = tiny_deployed(profile)
    split = model.split
    assert len(split.programs) == len(model.layers) == 2
    feeds = chip_feeds(model.layers, draw_chip(model.layers, model.weights, 4, 2))
    x = np.zeros((1, 1, 8, 8), np.float32)
    ref = whole_graph(model.proto, list(split.programmed)).run(list(split.programmed), {model.input_name: x, **feeds})
    got = Programmer(split, model.layers, model.weights).program(4, 2)
    for name, want in zip(split.programmed, ref, strict=True):
        np.testing.assert_array_equal(got[name], want)
    assert not np.array_equal(got[split.programmed[0]], model.weights[model.layers[0].weight])


@pytest.mark.parametrize("strategy", ["fold", "feed"])
def test_chip_logits_equal_the_whole_graph_and_the_inference_graph_holds_no_weights(strategy):
    model = tiny_deployed("nft_reference")  # no read noise: the whole graph is deterministic given the chip
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    feeds = chip_feeds(model.layers, draw_chip(model.layers, model.weights, 1, 3))
    want = whole_graph(model.proto, []).run([model.output_name], {model.input_name: x, **feeds})[0]
    programmed = Programmer(model.split, model.layers, model.weights).program(1, 3)
    session, feeds = InferenceGraph(model.split, model.weights).session(programmed, None, 1, fold=strategy == "fold")
    got = session.run([model.output_name], {model.input_name: x, **feeds})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    stored = {i.name for i in onnx.load_from_string(model.split.inference).graph.initializer}
    assert stored and not stored & (set(model.weights) | set(model.split.programmed))  # read by name, not stored


def test_the_ideal_chip_is_the_clean_graph_and_read_noise_follows_the_chip_seed():
    model = tiny_deployed("rram_4bit")  # read noise and stuck-at faults
    x = np.random.default_rng(1).random((8, 1, 8, 8), dtype=np.float32)
    zeros = {n: np.zeros(lay.shape, np.float32) for lay in model.layers for n in (lay.chip_input, lay.stuck_input) if n}
    want = whole_graph(clean_proto(model.proto), []).run([model.output_name], {model.input_name: x, **zeros})[0]
    programmer = Programmer(model.split, model.layers, model.weights)
    clean, feeds = InferenceGraph(model.split, model.weights, clean=True).session(programmer.program(0, None), None, 1,
                                                                                  fold=False)
    np.testing.assert_allclose(clean.run([model.output_name], {model.input_name: x, **feeds})[0], want, rtol=1e-5,
                               atol=1e-5)

    def read(chip, fold, seed=0):
        graph = InferenceGraph(model.split, model.weights)
        seq = np.random.SeedSequence(seed, spawn_key=(chip, READ_NOISE_KEY))
        session, feeds = graph.session(programmer.program(seed, 0), seq, 1, fold=fold)
        return session.run([model.output_name], {model.input_name: x, **feeds})[0]

    np.testing.assert_array_equal(read(0, True), read(0, True))
    np.testing.assert_allclose(read(0, True), read(0, False), rtol=1e-5, atol=1e-5)  # same draws either way
    assert not np.allclose(read(0, True), read(1, True))  # same programmed weights, another chip's read noise
