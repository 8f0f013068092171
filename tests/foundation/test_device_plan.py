"""compile_plan: the one rule that decides mapped or digital and resolves each layer's device."""

from __future__ import annotations

import pytest
from nft_deploy.converters.handlers import Decline, mappable_ops

from nft_deploy.device_plan import DevicePlan, FoundWeight, compile_plan, sigma_factors, table
from nft_deploy.errors import ExportError, ProfileError
from nft_deploy.profile_types import MAPPABLE_OPS
from nft_deploy.profiles import profile_from_dict

FOUND = [FoundWeight("conv1", "Conv", "conv1.weight", (4, 1, 3, 3)),
         FoundWeight("fc1", "Gemm", "fc1.weight", (10, 36)),
         FoundWeight("proj", "MatMul", "proj", (36, 10), out_axis=1),
         FoundWeight("/attn/MatMul", "MatMul", None, decline=Decline("weight not constant"), node="/attn/MatMul")]


def _profile(**mapping):
    return profile_from_dict({"schema_version": 1, "name": "p", "programming": {"sigma": 0.1},
                              "stuck_at": {"zero_rate": 0.01}, "io": {"input_bits": 8},
                              "mapping": {"overrides": [{"layers": "proj", "programming": {"sigma": 0.3}},
                                                        {"layers": "fc1", "programming": {"sigma": 0.0}}],
                                          **mapping}})


def test_each_row_says_mapped_or_why_digital():
    plan = compile_plan(FOUND, _profile(op_types=["Conv", "MatMul"], digital_layers=["conv*"]))
    assert [(lay.name, lay.mapped, lay.reason) for lay in plan.layers] == [
        ("conv1", False, "mapping.digital_layers 'conv*'"),
        ("fc1", False, "op type Gemm not in mapping.op_types"),
        ("proj", True, "mapped"),
        ("/attn/MatMul", False, "weight not constant")]
    (proj,) = plan.mapped
    assert proj.chip_input == "nft.chip/proj" and proj.stuck_input == "nft.stuck/proj" and proj.input_bits == 8
    assert proj.device.programming.sigma == 0.3 and proj.out_axis == 1


def test_a_layer_without_programming_variation_has_no_chip_input_but_keeps_its_faults():
    fc1 = next(lay for lay in compile_plan(FOUND, _profile()).layers if lay.name == "fc1")
    assert fc1.mapped and fc1.chip_input is None and fc1.stuck_input == "nft.stuck/fc1"


def test_a_fatal_decline_stops_unless_the_layer_is_kept_digital():
    found = [FoundWeight("w", "Conv", None, decline=Decline("weight not constant", fatal=True), node="c")]
    with pytest.raises(ExportError, match=r"'c' \(Conv\): weight not constant.*digital_layers \[\"w\"\]"):
        compile_plan(found, _profile())
    (row,) = compile_plan(found, _profile(digital_layers=["w"])).layers
    assert not row.mapped and row.reason == "mapping.digital_layers 'w'"


def test_two_weights_with_one_layer_name_are_ambiguous():
    found = [FoundWeight("a", "Gemm", "a.weight", (2, 2)), FoundWeight("a", "MatMul", "a", (2, 2))]
    with pytest.raises(ExportError, match="layer name 'a': two weights"):
        compile_plan(found, _profile())


def test_plan_at_a_sigma_keeps_override_ratios_graph_inputs_and_json_round_trip():
    plan = compile_plan(FOUND, _profile())
    at = plan.with_sigma(0.2)
    sigmas = {lay.name: lay.device.programming.sigma for lay in at.mapped}
    assert sigmas == {"conv1": 0.2, "fc1": 0.0, "proj": pytest.approx(0.6)}
    assert [lay.chip_input for lay in at.mapped] == [lay.chip_input for lay in plan.mapped]
    factors = sigma_factors(plan, at)
    assert factors["conv1"] == pytest.approx(2.0) and factors["proj"] == pytest.approx(2.0) and factors["fc1"] == 0
    back = DevicePlan.from_json(at.to_json())
    assert back == at and [lay.to_dict() for lay in back.layers] == [lay.to_dict() for lay in at.layers]
    assert "3 mapped, 1 digital; profile 'p' at sigma 0.2" in table(at)[-1]


def test_sigma_cannot_give_variation_to_a_layer_exported_without_it():
    zero_top = profile_from_dict({"schema_version": 1, "name": "z", "programming": {"sigma": 0.0}})
    plan = compile_plan(FOUND[:1], zero_top)
    with pytest.raises(ProfileError, match="exported without programming variation"):
        sigma_factors(plan, plan.with_sigma(0.1), "m.onnx")


def test_the_profile_op_types_are_the_registry_families():
    assert MAPPABLE_OPS == mappable_ops() == ("Conv", "Gemm", "MatMul", "ConvTranspose", "LSTM", "GRU")
