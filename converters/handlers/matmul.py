"""MatMul with a constant 2-D weight, whatever its name (machine names such as ``onnx::MatMul_12`` too).

``X @ W`` with ``W [in, out]``: outputs on axis 1. ``W @ X`` (constant first operand ``[out, in]``):
outputs on axis 0. Two activations (attention scores) are not a crossbar layer: skipped, not fatal.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs
from nft_deploy.converters.handlers.site import Decline, WeightSite, constant_input

OP_TYPES = ("MatMul",)


def handle(node: gs.Node) -> WeightSite | Decline:
    """Prefer the second operand as the weight (the usual ``x @ W``)."""
    for index, out_axis, data in ((1, 1, 0), (0, 0, 1)):
        w = constant_input(node, index)
        if w is None:
            continue
        if len(w.shape) != 2:
            return Decline(f"weight is {len(w.shape)}-D, not a 2-D matrix")
        return WeightSite(weight_input=index, out_axis=out_axis, data_input=data)
    return Decline("weight not constant")
