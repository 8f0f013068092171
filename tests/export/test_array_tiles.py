"""Row tiles in both engines: without an ADC a tiled layer equals the untiled one; with an ADC it equals an
independent numpy reference (each row tile's partial sum quantized with its own full-scale range, then summed);
the graph holds one node per tile with standard ops only; a layer of one row tile is today's graph."""

from __future__ import annotations

import numpy as np
from nft_deploy.converters.graph_pass import run_pass

from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.runner import chip_logits
from nft_deploy.profiles import profile_from_dict
from nft_deploy.training.montecarlo import torch_chip_logits


def _profile(output_bits, array=True, sigma=0.0):
    return profile_from_dict({"schema_version": 1, "name": "tiles", "weights": {"quantize": False},
                              "programming": {"sigma": sigma}, "io": {"output_bits": output_bits},
                              "array": {"rows": 64, "cols": 64} if array else None})


def _both(net, prof, chip=0):
    model, onnx_model, x = net
    deployed = load_deployed(run_pass(onnx_model, prof)[0])
    return chip_logits(deployed, x, chip, seed=5), torch_chip_logits(model, prof, x, chip=chip, seed=5)


def _adc(v, bits):
    """The full-scale rule: per sample, round(v / m * L) * m / L with m = max |v| over the sample."""
    levels = 2.0 ** (bits - 1) - 1
    m = np.abs(v).reshape(len(v), -1).max(axis=1).reshape((-1,) + (1,) * (v.ndim - 1))
    m = np.where(m > 0, m, 1.0)
    return np.round(v / m * levels) * m / levels


def _reference(net, bits):
    """numpy, float64: conv as sums over sliding windows, split by input-channel tiles [0:7], [7:14], [14:20]
    (7 channels x 9 taps = 63 rows of 64); the Linear's 64 inputs fit one tile."""
    model, _, x = net
    w, b = model.conv.weight.detach().double().numpy(), model.conv.bias.detach().double().numpy()
    win = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), (3, 3), axis=(2, 3))  # N,C,4,4,3,3
    h = 0
    for k, (lo, hi) in enumerate(((0, 7), (7, 14), (14, 20))):
        part = np.einsum("ncijab,ocab->noij", win[:, lo:hi], w[:, lo:hi])
        if k == 0:
            part = part + b[None, :, None, None]
        h = h + _adc(part, bits)
        h = h.astype(np.float32).astype(np.float64)  # both engines add float32 partial sums
    fw, fb = model.fc.weight.detach().double().numpy(), model.fc.bias.detach().double().numpy()
    return _adc(h.reshape(len(x), -1) @ fw.T + fb, bits)


def test_without_an_adc_a_tiled_layer_equals_the_untiled_layer_in_both_engines(net):
    tiled_ort, tiled_torch = _both(net, _profile(None, sigma=0.1), chip=2)
    flat_ort, flat_torch = _both(net, _profile(None, array=False, sigma=0.1), chip=2)
    np.testing.assert_allclose(tiled_ort, flat_ort, rtol=0, atol=1e-5)
    np.testing.assert_allclose(tiled_torch, flat_torch, rtol=0, atol=1e-5)
    assert np.abs(tiled_ort - _both(net, _profile(None, array=False), chip=2)[0]).max() > 1e-3  # the chip counts


def test_with_a_6bit_adc_each_row_tile_is_quantized_before_the_digital_sum(net):
    ort, tch = _both(net, _profile(6))
    ref = _reference(net, 6)
    step = np.abs(ref).max() / 31
    np.testing.assert_allclose(ort, ref, rtol=0, atol=1e-4)
    np.testing.assert_allclose(tch, ref, rtol=0, atol=1e-4)
    once = _both(net, _profile(6, array=False))[0]  # today's single ADC on the full sum differs
    assert np.abs(once - ref).max() > 0.1 * step


def test_the_graph_holds_one_masked_node_per_row_tile_and_an_adc_on_each(net):
    _, onnx_model, _ = net
    graph = run_pass(onnx_model, _profile(6))[0].graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Conv") == 3 and ops.count("Gemm") == 1  # the Linear fits one row tile
    assert sum(1 for n in graph.node if n.name.endswith("/adc_round") or "/adc" in n.name and
               n.op_type == "Round") == 4  # three partial-sum ADCs and the Linear's
    assert sum(1 for n in graph.node if n.op_type == "Add" and "/psum" in n.name) == 2
    conv_inputs = [len(n.input) for n in graph.node if n.op_type == "Conv"]
    assert conv_inputs == [3, 2, 2]  # the bias rides with tile 0


def test_a_profile_whose_layers_fit_one_array_gives_todays_graph(net):
    _, onnx_model, _ = net
    wide = profile_from_dict({**_profile(6).to_dict(), "array": {"rows": 512, "cols": 512}})
    a = run_pass(onnx_model, wide)[0].graph
    b = run_pass(onnx_model, _profile(6, array=False))[0].graph
    assert a.SerializeToString() == b.SerializeToString()
