"""LSTM and GRU op families: W and R of every cell are crossbars in both engines, the chip draws land on
the same cells (ONNX gate order iofc / zrh, torch ifgo / rzn), and ONNX Runtime and torch agree per chip.

References: the float torch module (ideal profile, within 1e-5) and, per chip, the torch Monte Carlo on
the same draws (within 1e-4 of the logits' scale). Read noise is off: the torch engine models none.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from nft_deploy.converters.graph_pass import plan_graph, run_pass
from nft_deploy.converters.handlers import onnx_family
from torch import nn

from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.runner import chip_logits as ort_chip_logits
from nft_deploy.export import export_model
from nft_deploy.profiles import ReadNoise, load_profile, profile_from_dict
from nft_deploy.training.crossbars import torch_plan
from nft_deploy.training.montecarlo import torch_chip_logits
from nft_deploy.training.noisy import NoisyModel

STEPS, FEATURES, HIDDEN = 5, 3, 4
HOSTILE = {"schema_version": 1, "name": "hostile_rnn",
           "weights": {"bits": 6, "bits_per_cell": 2, "quantize": True, "scale": "per_channel"},
           "programming": {"sigma": 0.12, "state_dependent": {"factor": 3.0}},
           "stuck_at": {"zero_rate": 0.02, "full_rate": 0.01}, "io": {"input_bits": 6, "output_bits": 8},
           "mapping": {"overrides": [{"layers": "rnn.weight_hh*", "programming": {"sigma": 0.3}}]}}


class Classifier(nn.Module):
    """A recurrent classifier: the last step's hidden state through a linear head."""

    def __init__(self, kind: type[nn.RNNBase], layers: int = 2, bidirectional: bool = False):
        super().__init__()
        self.rnn = kind(FEATURES, HIDDEN, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(HIDDEN * (2 if bidirectional else 1), 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


def _setup(kind, **kw):
    torch.manual_seed(0)
    module = Classifier(kind, **kw).eval()
    float_onnx = export_model(module, profile=None, no_device=True, input_shape=(STEPS, FEATURES)).model
    x = np.random.default_rng(1).normal(size=(64, STEPS, FEATURES)).astype(np.float32)
    return module, float_onnx, x


@pytest.fixture(scope="module", params=[nn.LSTM, nn.GRU], ids=["lstm", "gru"])
def recurrent(request):
    return _setup(request.param)


def _no_read(name_or_dict):
    prof = profile_from_dict(name_or_dict) if isinstance(name_or_dict, dict) else load_profile(name_or_dict)
    return dataclasses.replace(prof, read_noise=ReadNoise())


def test_the_exporter_reorders_gates_as_the_family_layout_states(recurrent):
    module, float_onnx, _ = recurrent
    inits = {i.name: i for i in float_onnx.graph.initializer}
    node = next(n for n in float_onnx.graph.node if n.op_type in ("LSTM", "GRU"))
    layout = onnx_family(node.op_type).layout
    for index, param in ((1, module.rnn.weight_ih_l0), (2, module.rnn.weight_hh_l0)):
        stored = np.frombuffer(inits[node.input[index]].raw_data, np.float32).reshape(inits[node.input[index]].dims)
        w = param.detach().numpy()
        gates = len(layout.order)
        by_hand = np.concatenate([w[g * HIDDEN:(g + 1) * HIDDEN] for g in layout.order])[None]  # the table
        np.testing.assert_array_equal(stored, by_hand)
        np.testing.assert_array_equal(layout.to_graph(w), stored)
        np.testing.assert_array_equal(layout.to_torch(stored), w)
        assert gates == (4 if node.op_type == "LSTM" else 3)


def test_both_weights_of_every_cell_are_mapped_under_their_torch_names_in_both_engines(recurrent):
    module, float_onnx, x = recurrent
    prof = load_profile("rram_4bit")
    graph, tch = plan_graph(float_onnx, prof), torch_plan(module, prof, torch.from_numpy(x[:2]))
    rows = [(lay.name, lay.op, lay.shape, lay.out_axis, lay.mapped) for lay in graph.layers]
    op, g = ("LSTM", 4) if isinstance(module.rnn, nn.LSTM) else ("GRU", 3)
    assert rows == [("rnn.weight_ih_l0", op, (1, g * HIDDEN, FEATURES), 1, True),
                    ("rnn.weight_hh_l0", op, (1, g * HIDDEN, HIDDEN), 1, True),
                    ("rnn.weight_ih_l1", op, (1, g * HIDDEN, HIDDEN), 1, True),
                    ("rnn.weight_hh_l1", op, (1, g * HIDDEN, HIDDEN), 1, True),
                    ("head", "Gemm", (3, HIDDEN), 0, True)]
    assert [(lay.name, lay.op, lay.shape, lay.out_axis, lay.mapped) for lay in tch.layers] == rows
    out, report = run_pass(float_onnx, prof)
    assert [c for c in report.chip_inputs if c.startswith("nft.chip/rnn")] == [
        "nft.chip/rnn.weight_ih_l0", "nft.chip/rnn.weight_hh_l0",
        "nft.chip/rnn.weight_ih_l1", "nft.chip/rnn.weight_hh_l1"]
    assert [r.layer for r in report.rewritten][:2] == ["rnn.weight_ih_l0,rnn.weight_hh_l0",
                                                      "rnn.weight_ih_l1,rnn.weight_hh_l1"]


def test_the_ideal_profile_reproduces_the_float_logits(recurrent):
    module, float_onnx, x = recurrent
    deployed = load_deployed(run_pass(float_onnx, load_profile("ideal"))[0])
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_chip_logits(deployed, x, 0, seed=0), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("profile", ["rram_4bit", "rram_state_dependent", "pcm_8bit", HOSTILE],
                         ids=["rram_4bit", "rram_state_dependent", "pcm_8bit", "hostile"])
def test_onnxruntime_and_torch_agree_per_chip(recurrent, profile):
    module, float_onnx, x = recurrent
    prof = _no_read(profile)
    deployed = load_deployed(run_pass(float_onnx, prof)[0])
    with torch.no_grad():
        clean = module(torch.from_numpy(x)).numpy()
    for chip in (0, 1, 2):
        ort = ort_chip_logits(deployed, x, chip, seed=7)
        tch = torch_chip_logits(module, prof, x, chip=chip, seed=7)
        tol = 1e-4 * max(1.0, float(np.abs(ort).max()))
        if prof.io.output_bits:  # the head's ADC may round a float32 difference to the next step
            assert int((ort.argmax(1) != tch.argmax(1)).sum()) == 0
            assert np.median(np.abs(ort - tch).max(axis=1)) <= tol
        else:
            np.testing.assert_allclose(ort, tch, rtol=0, atol=tol)
        assert np.abs(ort - clean).max() > 1e-3  # the chip is not the float model


def test_chip_draws_follow_the_gate_reorder(recurrent):
    """Mutation: applying the chip in torch's gate order breaks the per-chip agreement."""
    from nft_deploy.converters.handlers.recurrent import GateLayout

    module, float_onnx, x = recurrent
    prof = _no_read("rram_4bit")
    deployed = load_deployed(run_pass(float_onnx, prof)[0])
    family = onnx_family(deployed.plan.layers[0].op)
    original = family.layout
    object.__setattr__(family, "layout", GateLayout(tuple(range(len(original.order)))))  # frozen: a test-only swap
    try:
        tch = torch_chip_logits(module, prof, x, chip=0, seed=7)
    finally:
        object.__setattr__(family, "layout", original)
    assert np.abs(ort_chip_logits(deployed, x, 0, seed=7) - tch).max() > 1e-3


def test_a_recurrent_node_gets_no_converters_in_either_engine(recurrent):
    module, float_onnx, x = recurrent
    prof = _no_read({"schema_version": 1, "name": "dac_only", "programming": {"sigma": 0.0},
                     "io": {"input_bits": 4}})
    out, _ = run_pass(float_onnx, prof)
    reduce_max = [n for n in out.graph.node if n.op_type == "ReduceMax"]
    assert [n.name.split("/")[2] for n in reduce_max] == [next(n.name for n in out.graph.node if n.op_type == "Gemm")]
    ort = ort_chip_logits(load_deployed(out), x, 0, seed=0)
    np.testing.assert_allclose(ort, torch_chip_logits(module, prof, x, chip=0, seed=0), rtol=0, atol=1e-5)
    rows = plan_graph(float_onnx, prof).mapped  # the plan, and so `plan`'s table, says the same
    assert {(lay.op in ("LSTM", "GRU"), lay.input_bits) for lay in rows} == {(True, None), (False, 4)}


def test_training_noise_perturbs_both_weights_in_the_parameters_layout():
    module, _, x = _setup(nn.LSTM, layers=1)
    noisy = NoisyModel(module, load_profile("rram_4bit"), torch.Generator().manual_seed(0), torch.from_numpy(x[:2]))
    weights = noisy.sample_weights()
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "rnn.weight_ih_l0": (4 * HIDDEN, FEATURES), "rnn.weight_hh_l0": (4 * HIDDEN, HIDDEN), "head.weight": (3, HIDDEN)}
    for name, w in weights.items():
        assert not torch.allclose(w, dict(module.named_parameters())[name])
    many = noisy.noisy_many(torch.from_numpy(x[:8]), [None, None])
    assert many.shape == (2, 8, 3) and not torch.allclose(many[0], many[1])


def test_a_bidirectional_layer_stays_digital_in_both_engines_with_the_reason():
    module, float_onnx, x = _setup(nn.GRU, layers=1, bidirectional=True)
    prof = load_profile("rram_4bit")
    graph, tch = plan_graph(float_onnx, prof), torch_plan(module, prof, torch.from_numpy(x[:2]))
    for plan in (graph, tch):
        rnn = [lay for lay in plan.layers if lay.op == "GRU"]
        assert rnn and all(not lay.mapped and lay.reason.startswith("bidirectional") for lay in rnn)
        assert [lay.name for lay in plan.mapped] == ["head"]
