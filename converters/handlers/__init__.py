"""The handler registry: ONNX op type -> function ``handle(node) -> WeightSite | Decline``.

One module per op family; an op type not in ``HANDLERS`` passes through the pass untouched (and is
counted in the report). ``REFUSED`` lists op types that carry weights this pass cannot map: a model
holding one stops the pass with a clear error rather than deploying a half-noisy model.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_graphsurgeon as gs
from nft_deploy.converters.handlers import conv, conv_transpose, gemm, matmul
from nft_deploy.converters.handlers.site import Decline, WeightSite

Handler = Callable[[gs.Node], "WeightSite | Decline"]

HANDLERS: dict[str, Handler] = {
    op: module.handle for module in (conv, gemm, matmul, conv_transpose) for op in module.OP_TYPES
}

REFUSED: dict[str, str] = {
    "LSTM": "recurrent weights are not supported; export the cell as MatMul/Gemm",
    "GRU": "recurrent weights are not supported; export the cell as MatMul/Gemm",
    "RNN": "recurrent weights are not supported; export the cell as MatMul/Gemm",
    "ConvInteger": "already integer-quantized; export the float model",
    "MatMulInteger": "already integer-quantized; export the float model",
    "QLinearConv": "already integer-quantized; export the float model",
    "QLinearMatMul": "already integer-quantized; export the float model",
}

__all__ = ["HANDLERS", "REFUSED", "Decline", "Handler", "WeightSite"]
