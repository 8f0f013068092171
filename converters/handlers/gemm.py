"""Gemm: ``Y = A' B' + C``; the weight is B. transB=1 (torch Linear: ``[out, in]``) has outputs on
axis 0, transB=0 (``[in, out]``) on axis 1. The weight is kept in its stored layout, never transposed,
so the chip input has the torch parameter's shape for our exports.

torch ``linear(input, weight, bias)`` exports to Gemm for a 2-D input and to MatMul (+ Add) otherwise,
so its site names the op it becomes: ``mapping.op_types`` then means the same in both engines. The MatMul's
weight is the exporter's transposed copy ``W.T [in, out]`` (outputs on axis 1, named after the parameter by
``matmul.weight_origin``), so the site states that layout (``TRANSPOSED``) and both engines draw a chip's
cells alike; the bias is a separate Add, after the ADC. ``torch.addmm(b, x, W)`` (HF's ``Conv1D`` in GPT-2)
exports to Gemm with ``transB=0``: the weight ``[in, out]`` as stored, outputs on axis 1."""

from __future__ import annotations

from dataclasses import dataclass

from nft_deploy.converters.handlers.site import Decline, OpFamily, TorchSite, WeightSite, constant_input


def handle(node) -> WeightSite | Decline:
    """B must be a constant: a Gemm is a fully connected layer, its weight is the crossbar (fatal)."""
    w = constant_input(node, 1)
    if w is None:
        return Decline("weight not constant", fatal=True)
    if len(w.shape) != 2:
        return Decline(f"weight is {len(w.shape)}-D, Gemm needs 2-D", fatal=True)
    trans_b = int(node.attrs.get("transB", 0))
    return WeightSite(weight_input=1, out_axis=0 if trans_b else 1, data_input=0)


@dataclass(frozen=True)
class Transposed:
    """torch ``[out, in]`` <-> ONNX ``[in, out]`` (torch or numpy 2-D arrays; differentiable)."""

    def to_graph(self, w):
        return w.transpose(1, 0)

    def to_torch(self, w):
        return w.transpose(1, 0)


TRANSPOSED = Transposed()


def torch_site(func: str, args: tuple, is_weight) -> TorchSite | None:
    if func == "addmm":  # addmm(bias, x, W [in, out]): HF's Conv1D (GPT-2), a Gemm with transB=0
        if len(args) > 2 and is_weight(args[2]) and args[2].ndim == 2:
            return TorchSite(op="Gemm", weight_arg=2, data_arg=1, out_axis=1, bias_arg=0)
        return None
    if len(args) > 1 and is_weight(args[1]):
        w = args[1]
        if getattr(args[0], "ndim", 2) == 2 or w.ndim != 2:
            return TorchSite(op="Gemm", weight_arg=1, data_arg=0, out_axis=0, bias_arg=2)
        return TorchSite(op="MatMul", weight_arg=1, data_arg=0, out_axis=1, shape=(w.shape[1], w.shape[0]),
                         layout=TRANSPOSED, bias_arg=2)
    return None


FAMILY = OpFamily("gemm", ("Gemm",), handle, ("linear", "addmm"), torch_site)
