"""ConvTranspose: weight ``[C_in, C_out/group, *kernel]`` at input 1, output channels on axis 1."""

from __future__ import annotations

import onnx_graphsurgeon as gs
from nft_deploy.converters.handlers.site import Decline, WeightSite, constant_input

OP_TYPES = ("ConvTranspose",)


def handle(node: gs.Node) -> WeightSite | Decline:
    """Like Conv, but the stored layout puts output channels second (torch and ONNX agree)."""
    if constant_input(node, 1) is None:
        return Decline("weight not constant", fatal=True)
    return WeightSite(weight_input=1, out_axis=1, data_input=0)
