"""An op family with two weights per node (a recurrent cell's W and R), registered from outside the
package: both weights are planned, deployed and drawn per chip, and ONNX Runtime runs the result."""

from __future__ import annotations

import numpy as np
import pytest
from nft_deploy.converters.handlers import (
    Decline,
    OpFamily,
    WeightSite,
    register_op_family,
    unregister_op_family,
)
from nft_deploy.converters.handlers.site import constant_input

from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.runner import chip_logits
from nft_deploy.export import insert_device_nodes

RNN = """<ir_version: 9, opset_import: ["" : 18]>
g (float[N,5,3] x, float[1,4,3] cell_weight, float[1,4,4] recurrent_weight) => (float[N,4] out)
{
  seq = Transpose <perm=[1, 0, 2]> (x)
  y, h = RNN <hidden_size=4> (seq, cell_weight, recurrent_weight)
  hb = Transpose <perm=[1, 0, 2]> (h)
  out = Flatten <axis=1> (hb)
}"""


def _handle(node) -> tuple[WeightSite, ...] | Decline:
    """W [dirs, hidden, input] reads the input sequence; R [dirs, hidden, hidden] reads the state (no DAC)."""
    if constant_input(node, 1) is None or constant_input(node, 2) is None:
        return Decline("weight not constant", fatal=True)
    return WeightSite(weight_input=1, out_axis=1, data_input=0), WeightSite(weight_input=2, out_axis=1, data_input=None)


@pytest.fixture
def rnn_family():
    family = register_op_family(OpFamily("rnn", ("RNN",), _handle, ("rnn_tanh",), lambda *_: None))
    yield family
    unregister_op_family(family.name)


def test_both_weights_of_one_node_are_mapped_with_their_own_chip_inputs(tiny, rnn_family):
    model = tiny.make_model(RNN)
    prof = tiny.profile("rram_4bit", read_noise={"sigma": 0.0}, io={"input_bits": 8},
                        mapping={"op_types": ("RNN",)})
    out, report = insert_device_nodes(model, prof)
    assert [(lay.name, lay.op, lay.shape, lay.out_axis) for lay in report.plan.mapped] == [
        ("cell", "RNN", (1, 4, 3), 1), ("recurrent", "RNN", (1, 4, 4), 1)]
    assert report.chip_inputs == ["nft.chip/cell", "nft.stuck/cell", "nft.chip/recurrent", "nft.stuck/recurrent"]
    assert [r.layer for r in report.rewritten] == ["cell,recurrent"]  # one node, converters once
    assert tiny.op_counts(out)["ReduceMax"] == 1  # the DAC on x; none on the recurrent state

    deployed = load_deployed(out)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    chips = [chip_logits(deployed, x, chip, seed=1) for chip in (0, 1)]
    clean = tiny.run(tiny.make_model(RNN), {"x": x})[0]
    assert chips[0].shape == clean.shape == (2, 4)
    assert not np.allclose(chips[0], chips[1]) and not np.allclose(chips[0], clean, atol=1e-3)


def test_without_the_family_the_recurrent_op_is_refused(tiny):
    from nft_deploy.errors import ExportError

    with pytest.raises(ExportError, match="RNN carries weights the device pass cannot map"):
        insert_device_nodes(tiny.make_model(RNN), "rram_4bit")


def test_a_registered_family_is_a_valid_op_type_in_profiles_only_while_registered():
    from nft_deploy.errors import ProfileError
    from nft_deploy.profiles import profile_from_dict

    raw = {"schema_version": 1, "name": "r", "mapping": {"op_types": ["Conv", "RNN"]}}
    with pytest.raises(ProfileError, match=r"mapping.op_types\[1\]: must be one of .*got 'RNN'"):
        profile_from_dict(raw)
    family = register_op_family(OpFamily("rnn", ("RNN",), _handle, ("rnn_tanh",), lambda *_: None))
    try:
        assert profile_from_dict(raw).mapping.op_types == ("Conv", "RNN")
    finally:
        unregister_op_family(family.name)
