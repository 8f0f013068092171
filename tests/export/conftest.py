"""Shared exports for the export tests: each built-in model (small width) is exported once per session.

BN running statistics are randomised so that a folded or dropped batch-norm would show in the logits.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from nft_deploy.export import export_model
from nft_deploy.models import build_model
from nft_deploy.noise import NoiseModel

SMALL = {"lenet5": ({"width": 0.5}, 28), "vgg8": ({"width": 0.125}, 32), "resnet18": ({"width": 0.125}, 32)}


def small_model(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, **SMALL[name][0])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="session")
def built_in():
    """name -> SimpleNamespace(module, onnx (float), x (a batch of 3 inputs))."""
    out = {}
    for name, (_, size) in SMALL.items():
        module = small_model(name)
        res = export_model(module, profile=None, no_device=True, input_shape=(1, size, size))
        x = np.random.default_rng(0).random((3, 1, size, size), dtype=np.float32)
        out[name] = SimpleNamespace(module=module, onnx=res.model, x=x)
    return out


def ort_run(model: onnx.ModelProto, feeds: dict, outputs: list[str] | None = None) -> list[np.ndarray]:
    if outputs:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in outputs)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds)


def zero_feeds(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """x for the data input, zeros for every chip input."""
    feeds = {}
    for i in model.graph.input:
        if i.name.startswith("nft."):
            feeds[i.name] = np.zeros([d.dim_value for d in i.type.tensor_type.shape.dim], np.float32)
        else:
            feeds[i.name] = x
    return feeds


def torch_deployed(module: torch.nn.Module, layers, profile, draws=None) -> torch.nn.Module:
    """A copy of ``module`` whose mapped weights are the programmed ones (torch side of the parity)."""
    dep = copy.deepcopy(module)
    with torch.no_grad():
        for lay in layers:
            p = dep.get_parameter(lay.weight)
            nm = NoiseModel.for_layer(profile, lay.name)
            if draws is not None:
                p.copy_(nm.apply_chip_torch(p, draws[lay.name], lay.out_axis))
            else:
                s = nm.scale(p, lay.out_axis)
                p.copy_(s * nm.quantize_normalised(p / s))
    return dep


@pytest.fixture
def helpers():
    return SimpleNamespace(ort_run=ort_run, zero_feeds=zero_feeds, torch_deployed=torch_deployed,
                           small_model=small_model)


class ConvNet(torch.nn.Module):
    """Conv2d(20 -> 4, 3x3): 180 rows; on 64 rows, 7 channels per tile, 3 row tiles. Then a Linear(64 -> 5)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(20, 4, 3)
        self.fc = torch.nn.Linear(64, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


@pytest.fixture(scope="module")
def net():
    """A ConvNet, its float ONNX export and 48 inputs (tests of row tiles and calibrated ranges)."""
    torch.manual_seed(3)
    model = ConvNet().eval()
    onnx_model = export_model(model, profile=None, no_device=True, input_shape=(20, 6, 6)).model
    x = np.random.default_rng(4).standard_normal((48, 20, 6, 6)).astype(np.float32)
    return model, onnx_model, x


def assert_torch_matches_onnxruntime(model, deployed, plan, x: np.ndarray, chips=(0, 1), seed: int = 9) -> None:
    """The torch engine on ``plan`` and ONNX Runtime on ``deployed`` give the same logits per chip: at most one
    flipped prediction (a converter's rounding tie) and a median max-abs gap within 1e-4 of the logits' scale."""
    from nft_deploy.evaluation.runner import chip_logits
    from nft_deploy.training.montecarlo import chip_weights, plan_logits

    for chip in chips:
        ort_logits = chip_logits(deployed, x, chip, seed=seed)
        with torch.no_grad():
            tch = plan_logits(model, plan, chip_weights(model, plan, seed, chip), torch.from_numpy(x), 64)
        assert int((ort_logits.argmax(1) != tch.argmax(1)).sum()) <= 1
        assert np.median(np.abs(ort_logits - tch).max(axis=1)) <= 1e-4 * max(1.0, float(np.abs(ort_logits).max()))
