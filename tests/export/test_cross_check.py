"""The cross-check of the one device plan: torch and ONNX Runtime agree per chip, for every built-in
profile and hostile ones, on LeNet-5, VGG-8, ResNet-18 and a user module with ``torch.matmul`` on a
parameter, with and without ``--sigma``; and the two engines compile the same plan rows.

Read noise is off (the torch engine models none). Where no converter rounds, logits agree within 1e-4 of
their scale (max |logit|, at least 1);
where DACs/ADCs round, a float32 difference can move a value across a rounding edge, so per-chip
predictions may differ on at most 2 samples in 1,000 and most samples' logits still agree within 1e-4.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nft_deploy.converters.graph_pass import plan_graph, run_pass

from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.runner import chip_logits as ort_chip_logits
from nft_deploy.export import export_model
from nft_deploy.profiles import ReadNoise, list_profiles, load_profile, profile_from_dict
from nft_deploy.training.montecarlo import model_plan, torch_chip_logits

SAMPLES = 250
FLIPS_ALLOWED = math.ceil(2 * SAMPLES / 1000)

HOSTILE = {  # every feature at once: per-channel scale, state dependence, stuck-at, converters, globs, overrides
    "schema_version": 1, "name": "hostile",
    "weights": {"bits": 6, "bits_per_cell": 2, "quantize": True, "scale": "per_channel"},
    "programming": {"sigma": 0.12, "state_dependent": {"factor": 3.0}},
    "stuck_at": {"zero_rate": 0.002, "full_rate": 0.001},
    "io": {"input_bits": 6, "output_bits": 8},
    "mapping": {
        "digital_layers": ["fc3", "*shortcut*", "head"],
        "overrides": [
            {"layers": "*conv1*", "programming": {"sigma": 0.3}},
            {"layers": "fc*", "weights": {"bits": 4, "bits_per_cell": 1, "scale": "per_layer"},
             "programming": {"sigma": 0.3, "unit": "level"}},
            {"layers": "block2*", "programming": {"sigma": 0.0}},
        ],
    },
}
SUBSET = {  # the op_types subset of the bug report: Conv and MatMul only, so every Linear stays digital
    "schema_version": 1, "name": "conv_matmul",
    "programming": {"sigma": 0.2},
    "mapping": {"op_types": ["Conv", "MatMul"], "digital_layers": ["stem*", "*1.0.*"],
                "overrides": [{"layers": "conv2", "programming": {"sigma": 0.6}}]},
}


DRIFTING = {  # drift with every other feature: table law, per-column compensation, stuck-at, float weights
    "schema_version": 1, "name": "drift_hostile",
    "weights": {"bits": 6, "bits_per_cell": 2, "quantize": False, "scale": "per_channel"},
    "programming": {"sigma": 0.05, "state_dependent": {"factor": 2.0}},
    "stuck_at": {"zero_rate": 0.002, "full_rate": 0.001},
    "io": {"input_bits": 8},
    "mapping": {"digital_layers": ["fc3"], "overrides": [{"layers": "fc*", "weights": {"bits": 4, "bits_per_cell": 1}}]},
    "drift": {"law": "table", "table": [[0.0, 0.12, 0.03], [0.5, 0.06, 0.02], [1.0, 0.03, 0.01]],
              "compensation": "per_column", "t0": 30.0},
}
ARRAYED = {  # small arrays so every model spans several row and column tiles, a 6-bit ADC on each partial sum
    "schema_version": 1, "name": "arrays_hostile",
    "weights": {"bits": 6, "bits_per_cell": 2, "scale": "per_channel"},
    "programming": {"sigma": 0.1, "state_dependent": {"factor": 2.0}},
    "stuck_at": {"zero_rate": 0.002},
    "io": {"input_bits": 8, "output_bits": 6},
    "array": {"rows": 32, "cols": 24, "differential": False},
    "mapping": {"overrides": [{"layers": "fc*", "weights": {"bits": 4, "bits_per_cell": 1}}]},
}
TIMES = (1.0, 3600.0, 86400.0 * 365.25)


def _quiet(p):
    """``p`` without read noise (the torch engine models none), time-dependent read noise included."""
    drift = None if p.drift is None else dataclasses.replace(p.drift, read_noise=False)
    return dataclasses.replace(p, read_noise=ReadNoise(), drift=drift)


def _profiles():
    named = [_quiet(load_profile(n)) for n in list_profiles()]
    return named + [profile_from_dict(HOSTILE), profile_from_dict(SUBSET), profile_from_dict(ARRAYED)]


class Conv1D(torch.nn.Module):
    """HF transformers' ``Conv1D`` (GPT-2): ``addmm(bias, x, W)`` with ``W [in, out]``, a Gemm with transB=0."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_in, n_out) * 0.2)
        self.bias = torch.nn.Parameter(torch.randn(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x, self.weight)


class MatmulNet(torch.nn.Module):
    """A user module whose crossbar layers include a bare parameter used by ``torch.matmul`` and a Linear on
    a 3-D input called twice (``mix``, per row of the feature map: exported as MatMul + Add on two folded
    copies of W.T, its bias after the ADC; one programmed weight in both engines), and GPT-2's ``Conv1D``."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.mix = torch.nn.Linear(8, 8)
        with torch.no_grad():
            self.mix.bias.uniform_(-2.0, 2.0)  # a bias a few ADC steps wide: placed before the ADC it shows
        self.proj = torch.nn.Parameter(torch.randn(4 * 8 * 8, 40) * 0.1)
        self.head = torch.nn.Linear(24, 10)
        self.fc = torch.nn.Linear(24, 24)
        self.c_fc = Conv1D(40, 24)  # 40 rows: two row tiles on the 32-row arrays of ARRAYED

    def forward(self, x):
        rows = torch.relu(self.mix(torch.relu(self.conv1(x)).flatten(1, 2)))  # (batch, 4 x 8 rows, 8)
        rows = torch.relu(self.mix(rows))  # mix again: the exporter folds a second copy of W.T
        h = torch.relu(torch.matmul(torch.flatten(rows, 1), self.proj))
        return self.head(torch.relu(self.fc(torch.relu(self.c_fc(h)))))


@pytest.fixture(scope="module")
def models(built_in):
    """name -> (torch module, float ONNX, inputs): the session's built-in exports plus the matmul module."""
    torch.manual_seed(0)
    user = MatmulNet().eval()
    out = {"matmul_user": (user, export_model(user, profile=None, no_device=True, input_shape=(1, 8, 8)).model,
                           np.random.default_rng(1).random((SAMPLES, 1, 8, 8), dtype=np.float32))}
    for name, b in built_in.items():
        size = b.x.shape[-1]
        out[name] = (b.module, b.onnx, np.random.default_rng(1).random((SAMPLES, 1, size, size), dtype=np.float32))
    return out


def _rows(plan):
    """What both engines must agree on: every row with a weight (a parameter, an ONNX constant); a digital
    row by its name, op, weight and reason (a declined weight has no output axis to compare)."""
    keep = ("name", "op", "weight", "mapped", "reason")
    return [{k: v for k, v in lay.to_dict().items() if k != "node" and (lay.mapped or k in keep)}
            for lay in plan.layers if lay.weight]


def _agree(module, deployed, prof, x, sigma, chip, seconds=None):
    ort = ort_chip_logits(deployed, x, chip, seed=7, sigma=sigma, seconds=seconds)
    tch = torch_chip_logits(module, prof, x, chip=chip, seed=7, sigma=sigma, seconds=seconds)
    tol = 1e-4 * max(1.0, float(np.abs(ort).max()))  # 1e-4 of the logits' scale: float32 rounding grows with it
    converters = any(lay.input_bits or lay.output_bits for lay in deployed.layers)
    if converters:
        flips = int((ort.argmax(1) != tch.argmax(1)).sum())
        assert flips <= FLIPS_ALLOWED, f"{flips} of {len(x)} predictions differ on chip {chip}"
        # a rounding edge moves only the samples whose activations cross it: most samples agree exactly,
        # which they would not if one engine skipped a converter (every sample then moves by ~half a step)
        assert np.median(np.abs(ort - tch).max(axis=1)) <= tol
    else:
        np.testing.assert_allclose(ort, tch, rtol=0, atol=tol)
    return ort


@pytest.mark.parametrize("prof", _profiles(), ids=lambda p: p.name)
@pytest.mark.parametrize("name", ["lenet5", "vgg8", "resnet18", "matmul_user"])
def test_torch_and_onnxruntime_agree_per_chip_with_and_without_sigma(models, name, prof):
    module, float_onnx, x = models[name]
    deployed = load_deployed(run_pass(float_onnx, prof)[0])
    assert _rows(model_plan(module, prof, x)) == _rows(deployed.plan)  # one plan, compiled by both engines
    with torch.no_grad():
        clean = module(torch.from_numpy(x)).numpy()
    moved = False
    for sigma in (None, 0.25):
        if sigma is not None and not deployed.chip_inputs:
            continue  # nothing to rescale (ideal): evaluate --sigma says so in one line
        ort = _agree(module, deployed, prof, x, sigma, chip=1)
        moved |= bool(np.abs(ort - clean).max() > 1e-3)
    assert moved or prof.name == "ideal", "the chip changed no logit: the comparison would prove nothing"


@pytest.mark.parametrize("prof", [_quiet(load_profile("pcm_drift")), profile_from_dict(DRIFTING)], ids=lambda p: p.name)
@pytest.mark.parametrize("name", ["lenet5", "matmul_user"])
def test_torch_and_onnxruntime_agree_per_chip_at_every_time_on_a_drifting_profile(models, name, prof):
    """Drift, its compensation and the chip's exponents are the plan's: both engines read the same chip at
    each time (the deployed graph takes the time as an input; nothing is re-exported)."""
    module, float_onnx, x = models[name]
    deployed = load_deployed(run_pass(float_onnx, prof)[0])
    assert _rows(model_plan(module, prof, x)) == _rows(deployed.plan)
    assert deployed.plan.drifts and "nft.time" in deployed.chip_inputs
    logits = [_agree(module, deployed, prof, x, None, chip=2, seconds=t) for t in TIMES]
    assert np.abs(logits[0] - logits[-1]).max() > 1e-3, "a year of drift changed no logit: the check proves nothing"


def test_export_at_a_sigma_equals_the_default_export_evaluated_at_that_sigma(models):
    """``export --sigma 0.2`` and ``evaluate --sigma 0.2`` of the default export are the same chips, on a
    profile whose override has its own sigma."""
    module, float_onnx, x = models["lenet5"]
    prof = profile_from_dict(SUBSET)
    at_02 = load_deployed(export_model(module, profile=prof, sigma=0.2, input_shape=(1, 28, 28)).model)
    default = load_deployed(run_pass(float_onnx, prof)[0])
    assert at_02.plan.layers[1].device.programming.sigma == pytest.approx(0.6 * 0.2 / 0.2)
    for chip in (0, 3):
        np.testing.assert_allclose(ort_chip_logits(at_02, x, chip, seed=2),
                                   ort_chip_logits(default, x, chip, seed=2, sigma=0.2), rtol=0, atol=1e-5)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_valid_profiles_agree_per_chip(models, data):
    module, float_onnx, x = models["lenet5"]
    bits = data.draw(st.integers(2, 8), "bits")
    layers = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    section = st.fixed_dictionaries({"sigma": st.floats(0.0, 0.4)}, optional={"unit": st.sampled_from(["cell_range", "level"])})
    raw = {
        "schema_version": 1, "name": "drawn",
        "weights": {"bits": bits, "bits_per_cell": data.draw(st.integers(1, bits), "bits_per_cell"),
                    "quantize": data.draw(st.booleans(), "quantize"),
                    "scale": data.draw(st.sampled_from(["per_layer", "per_channel"]), "scale")},
        "programming": {"sigma": data.draw(st.floats(0.01, 0.4), "sigma"),
                        "state_dependent": data.draw(st.none() | st.fixed_dictionaries(
                            {"factor": st.floats(0.5, 6.0)}), "state")},
        "stuck_at": {"zero_rate": data.draw(st.sampled_from([0.0, 0.01]), "zero")},
        "io": {"input_bits": data.draw(st.sampled_from([None, 8]), "dac"),
               "output_bits": data.draw(st.sampled_from([None, 8]), "adc")},
        "mapping": {
            "op_types": data.draw(st.sampled_from([["Conv", "Gemm"], ["Conv"], ["Gemm", "MatMul"]]), "ops"),
            "digital_layers": data.draw(st.lists(st.sampled_from(layers), max_size=2), "digital"),
            "overrides": [{"layers": data.draw(st.sampled_from(layers), "override"),
                           "programming": data.draw(section, "override_programming")}],
        },
    }
    prof = profile_from_dict(raw)
    graph_plan = plan_graph(float_onnx, prof)
    assert _rows(model_plan(module, prof, x)) == _rows(graph_plan)  # also when neither maps anything
    if graph_plan.mapped:  # else export refuses in one line (tested elsewhere)
        _agree(module, load_deployed(run_pass(float_onnx, prof)[0]), prof, x, None, chip=0)


class ReadTwice(torch.nn.Module):
    """``fc.weight`` feeds its crossbar and an elementwise product with an activation: the graph would
    perturb only the crossbar's copy. (A function of the weight alone, ``w.sum()``, the exporter folds into
    a constant: then only torch sees the second read, and ``export`` names the layer where the plans differ.)"""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 3, 3)
        self.fc = torch.nn.Linear(3 * 6 * 6, 10)

    def forward(self, x):
        h = torch.flatten(torch.relu(self.conv1(x)), 1)
        return self.fc(h) + (h.unsqueeze(1) * self.fc.weight).sum(2)


def test_a_weight_also_read_outside_a_crossbar_stays_digital_in_both_engines():
    torch.manual_seed(0)
    net = ReadTwice().eval()
    x = np.random.default_rng(2).random((64, 1, 8, 8), dtype=np.float32)
    prof = dataclasses.replace(load_profile("rram_4bit"), read_noise=ReadNoise())
    float_onnx = export_model(net, profile=None, no_device=True, input_shape=(1, 8, 8)).model
    deployed = load_deployed(run_pass(float_onnx, prof)[0])
    torch_side = model_plan(net, prof, x)
    assert _rows(torch_side) == _rows(deployed.plan)
    assert [(lay.name, lay.mapped, lay.reason) for lay in torch_side.layers] == [
        ("conv1", True, "mapped"), ("fc", False, "weight also read outside a crossbar op")]
    _agree(net, deployed, prof, x, None, chip=2)
