"""Conv: weight ``[C_out, C_in/group, *kernel]`` at input 1, output channels on axis 0."""

from __future__ import annotations

import onnx_graphsurgeon as gs
from nft_deploy.converters.handlers.site import Decline, WeightSite, constant_input

OP_TYPES = ("Conv",)


def handle(node: gs.Node) -> WeightSite | Decline:
    """A Conv always carries a crossbar weight: a non-constant one cannot be programmed (fatal)."""
    if constant_input(node, 1) is None:
        return Decline("weight not constant", fatal=True)
    return WeightSite(weight_input=1, out_axis=0, data_input=0)
