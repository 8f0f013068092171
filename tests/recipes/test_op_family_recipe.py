"""The recipe for a new op family, followed from outside the package: a linear layer written as
``torch.einsum("bi,oi->bo", x, W)`` exports to an ONNX ``Einsum``, which no built-in family maps. One
``OpFamily`` (ONNX handler + torch matcher), registered through ``register_op_family`` and removed with
``unregister_op_family``, makes the plan map it, the pass deploy it and the torch plan agree."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from nft_deploy.converters.handlers import (
    Decline,
    OpFamily,
    TorchSite,
    WeightSite,
    mappable_ops,
    onnx_family,
    register_op_family,
    unregister_op_family,
)
from nft_deploy.converters.handlers.site import constant_input

from nft_deploy.errors import ExportError
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.runner import chip_logits
from nft_deploy.export import export_model, insert_device_nodes
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import load_profile

EQUATION = "bi,oi->bo"  # x [batch, in], W [out, in]: torch Linear's layout, output channels on axis 0


def _handle(node) -> WeightSite | Decline:
    """ONNX side: where the crossbar weight of an ``Einsum`` node is, or why it is not one."""
    if node.attrs.get("equation") != EQUATION:
        return Decline(f"equation {node.attrs.get('equation')!r} is not {EQUATION!r}")
    w = constant_input(node, 1)
    if w is None or len(w.shape) != 2:
        return Decline("weight not a constant matrix")
    return WeightSite(weight_input=1, out_axis=0, data_input=0)


def _torch_site(func: str, args: tuple, is_weight) -> TorchSite | None:
    """torch side: the same site for ``torch.einsum(EQUATION, x, W)`` (arguments: equation, x, W)."""
    if len(args) == 3 and args[0] == EQUATION and is_weight(args[2]):
        return TorchSite(op="Einsum", weight_arg=2, data_arg=1, out_axis=0)
    return None


EINSUM = OpFamily("einsum_linear", ("Einsum",), _handle, ("einsum",), _torch_site, torch_args=("equation",))


class EinsumNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(3, 8) * 0.5)

    def forward(self, x):
        return torch.einsum(EQUATION, x, self.proj)


@pytest.fixture
def einsum_family():
    family = register_op_family(EINSUM)
    yield family
    unregister_op_family(family.name)


def _profile(noise: bool):
    """rram_4bit mapping Einsum; without noise only the 4-bit quantization is left."""
    p = load_profile("rram_4bit")
    p = dataclasses.replace(p, mapping=dataclasses.replace(p.mapping, op_types=("Einsum",)))
    if noise:
        return p
    return dataclasses.replace(p, programming=dataclasses.replace(p.programming, sigma=0.0),
                               read_noise=dataclasses.replace(p.read_noise, sigma=0.0),
                               stuck_at=dataclasses.replace(p.stuck_at, zero_rate=0.0, full_rate=0.0))


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_a_registered_family_is_planned_deployed_and_matches_torch(einsum_family):
    module = EinsumNet().eval()
    res = export_model(module, profile=_profile(noise=False), input_shape=(8,))
    assert [(lay.name, lay.op, lay.shape, lay.out_axis) for lay in res.report.plan.mapped] == [
        ("proj", "Einsum", (3, 8), 0)]
    assert [r.op_type for r in res.report.rewritten] == ["Einsum"]
    assert res.notes == []  # the torch plan (training) and the graph's plan agree
    assert res.report.chip_inputs == []  # no programming variation, no stuck-at: nothing to draw per chip

    x = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    w = module.proj.detach().double()
    nm = NoiseModel.for_layer(res.profile, "proj")
    s = nm.scale(w, 0)
    programmed = (s * nm.quantize_normalised(w / s)).numpy()
    got = _ort(res.model, x)
    np.testing.assert_allclose(got, x @ programmed.T, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, x @ w.numpy().T, atol=1e-3)  # the 4-bit weight, not the float one


def test_with_noise_each_chip_differs(einsum_family):
    module = EinsumNet().eval()
    res = export_model(module, profile=_profile(noise=True), input_shape=(8,))
    assert res.report.chip_inputs == ["nft.chip/proj", "nft.stuck/proj"]
    deployed = load_deployed(res.model)
    x = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    chips = [chip_logits(deployed, x, chip, seed=1) for chip in (0, 1)]
    quiet = _ort(export_model(module, profile=_profile(noise=False), input_shape=(8,)).model, x)
    assert chips[0].shape == quiet.shape == (5, 3)
    assert not np.allclose(chips[0], chips[1]) and not np.allclose(chips[0], quiet, atol=1e-3)


def test_a_node_the_handler_declines_stays_digital(einsum_family):
    float_model = export_model(EinsumNet().eval(), profile=None, no_device=True, input_shape=(8,)).model
    (node,) = float_model.graph.node
    next(a for a in node.attribute if a.name == "equation").s = b"bi,oi->bo "  # same maths, other spelling
    with pytest.raises(ExportError, match="no mappable layer"):
        insert_device_nodes(float_model, _profile(noise=False))


def test_unregistered_the_op_passes_through_again():
    family = register_op_family(EINSUM)
    assert "Einsum" in mappable_ops() and onnx_family("Einsum") is family
    assert unregister_op_family(family.name) is family
    assert "Einsum" not in mappable_ops() and onnx_family("Einsum") is None
    with pytest.raises(KeyError, match="no op family 'einsum_linear'"):
        unregister_op_family(family.name)
