"""Gemm: ``Y = A' B' + C``; the weight is B. transB=1 (torch Linear: ``[out, in]``) has outputs on
axis 0, transB=0 (``[in, out]``) on axis 1. The weight is kept in its stored layout, never transposed,
so the chip input has the torch parameter's shape for our exports."""

from __future__ import annotations

import onnx_graphsurgeon as gs
from nft_deploy.converters.handlers.site import Decline, WeightSite, constant_input

OP_TYPES = ("Gemm",)


def handle(node: gs.Node) -> WeightSite | Decline:
    """B must be a constant: a Gemm is a fully connected layer, its weight is the crossbar (fatal)."""
    w = constant_input(node, 1)
    if w is None:
        return Decline("weight not constant", fatal=True)
    if len(w.shape) != 2:
        return Decline(f"weight is {len(w.shape)}-D, Gemm needs 2-D", fatal=True)
    trans_b = int(node.attrs.get("transB", 0))
    return WeightSite(weight_input=1, out_axis=0 if trans_b else 1, data_input=0)
