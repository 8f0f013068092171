"""The op-family registry: every crossbar op family declared once (``OpFamily``), one module per family.

Everything that needs to know which ops are crossbars derives from ``OP_FAMILIES``: the ONNX handlers of
the graph pass (``handler_for``), training's and the torch engine's layer discovery (``torch_family``),
and the profile's allowed ``mapping.op_types`` (``mappable_ops``). An op type without a family passes
through the graph pass untouched (and is counted in the report). ``REFUSED`` lists op types that carry
weights this pass cannot map: a model holding one stops the pass with a clear error rather than
deploying a half-noisy model. Adding a family: write a module with a ``FAMILY`` and register it; code
outside the package calls ``register_op_family(OpFamily(...))`` and ``unregister_op_family(name)`` to
remove it again (a plugin's teardown, a test).
"""

from __future__ import annotations

from nft_deploy.converters.handlers import conv, conv_transpose, gemm, matmul, recurrent
from nft_deploy.converters.handlers.site import (
    Decline,
    OpFamily,
    TorchSite,
    WeightSite,
    bias_position,
    positional,
    sites,
    weight_of,
)

OP_FAMILIES: dict[str, OpFamily] = {}

REFUSED: dict[str, str] = {
    "RNN": "the plain RNN op is not supported (torch exports nn.RNN as MatMul/Gemm); export the cell so",
    "ConvInteger": "already integer-quantized; export the float model",
    "MatMulInteger": "already integer-quantized; export the float model",
    "QLinearConv": "already integer-quantized; export the float model",
    "QLinearMatMul": "already integer-quantized; export the float model",
}


def register_op_family(family: OpFamily) -> OpFamily:
    """Add a family; its ONNX op types and torch functions must not belong to another one."""
    for other in OP_FAMILIES.values():
        clash = set(other.onnx_ops) & set(family.onnx_ops) or set(other.torch_functions) & set(family.torch_functions)
        if other.name != family.name and clash:
            raise ValueError(f"op family {family.name!r}: {sorted(clash)[0]} already belongs to {other.name!r}")
    OP_FAMILIES[family.name] = family
    return family


def unregister_op_family(name: str) -> OpFamily:
    """Remove the family registered as ``name`` and return it; its op types pass through again."""
    if name not in OP_FAMILIES:
        raise KeyError(f"no op family {name!r} is registered (registered: {', '.join(OP_FAMILIES)})")
    return OP_FAMILIES.pop(name)


for _family in (conv.FAMILY, gemm.FAMILY, matmul.FAMILY, conv_transpose.FAMILY, recurrent.LSTM, recurrent.GRU):
    register_op_family(_family)


def mappable_ops() -> tuple[str, ...]:
    """Every ONNX op type some family maps (the allowed values of ``mapping.op_types``)."""
    return tuple(op for fam in OP_FAMILIES.values() for op in fam.onnx_ops)


def handler_for(op_type: str):
    """The ONNX handler of ``op_type``, or None for an op that passes through."""
    fam = onnx_family(op_type)
    return fam.handle if fam is not None else None


def onnx_family(op_type: str) -> OpFamily | None:
    """The family that maps ONNX ``op_type``."""
    return next((fam for fam in OP_FAMILIES.values() if op_type in fam.onnx_ops), None)


def torch_family(func_name: str) -> OpFamily | None:
    """The family whose torch functions include ``func_name``."""
    return next((fam for fam in OP_FAMILIES.values() if func_name in fam.torch_functions), None)


__all__ = ["OP_FAMILIES", "REFUSED", "Decline", "OpFamily", "TorchSite", "WeightSite", "bias_position", "handler_for",
           "mappable_ops", "onnx_family", "positional", "register_op_family", "sites", "torch_family",
           "unregister_op_family", "weight_of"]
