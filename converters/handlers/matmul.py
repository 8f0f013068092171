"""MatMul with a constant 2-D weight, whatever its name (machine names such as ``onnx::MatMul_12`` too).

``X @ W`` with ``W [in, out]``: outputs on axis 1. ``W @ X`` (constant first operand ``[out, in]``):
outputs on axis 0. Two activations (attention scores) are not a crossbar layer: skipped, not fatal.
torch ``matmul``/``mm``/``@`` with a parameter operand is the same site.

A torch ``linear`` on a 3-D input exports to a MatMul on a folded constant ``W.T`` with a machine name
(``val_6``); the dynamo exporter records the parameter it came from (``folded_from``) and ``weight_origin``
gives it back, so the layer keeps its torch name in both engines (``gemm.torch_site`` states the layout).
"""

from __future__ import annotations

from nft_deploy.converters.handlers.site import Decline, OpFamily, TorchSite, WeightSite, constant_input

_OPERANDS = ((1, 1, 0), (0, 0, 1))  # (weight position, its output axis, data position), the usual x @ W first


def _decline_shape(ndim: int) -> Decline | None:
    return None if ndim == 2 else Decline(f"weight is {ndim}-D, not a 2-D matrix")


def handle(node) -> WeightSite | Decline:
    """Prefer the second operand as the weight (the usual ``x @ W``)."""
    for index, out_axis, data in _OPERANDS:
        w = constant_input(node, index)
        if w is None:
            continue
        return _decline_shape(len(w.shape)) or WeightSite(weight_input=index, out_axis=out_axis, data_input=data)
    return Decline("weight not constant")


def torch_site(func: str, args: tuple, is_weight) -> TorchSite | None:
    for index, out_axis, data in _OPERANDS:
        if len(args) > index and is_weight(args[index]):
            return TorchSite(op="MatMul", weight_arg=index, data_arg=data, out_axis=out_axis,
                             decline=_decline_shape(args[index].ndim))
    return None


def weight_origin(names: list[str]) -> str | None:
    """The parameter a folded constant was computed from alone (a transpose of ``mix.weight``); None when it
    came from several tensors (``p.t()`` lists the ``t`` node too) or none."""
    return names[0] if len(names) == 1 and names[0] else None


FAMILY = OpFamily("matmul", ("MatMul",), handle, ("matmul", "mm", "__matmul__"), torch_site,
                  torch_args=("input", "other"), weight_origin=weight_origin)
