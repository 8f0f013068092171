"""Checks on a model a user hands in, before anything runs on it: one ``NftDeployError`` line each.

ONNX (``check_onnx``): every data input states its rank (symbolic dims are fine), the model passes
``onnx.checker``, its ``ai.onnx`` opset is one the device graph pass emits valid nodes for
(``MIN_OPSET``..``MAX_OPSET``), and its weights are finite. Torch state dicts (``check_finite_state``,
``state_mismatch``): finite float tensors, and keys and shapes that fit the model they are loaded into.

Finite means: no NaN in any float initializer, and no NaN or +-Inf in a tensor a crossbar op reads
(a weight, a bias); a device simulation of such weights is meaningless. ``-inf`` elsewhere (an attention
mask) is legitimate and allowed. An all-zero weight is legitimate: it stays zero (``NoiseModel.scale``).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from nft_deploy.errors import ExportError

MIN_OPSET = 13
"""The oldest ai.onnx opset the pass supports: per-axis QuantizeLinear (13), Round and Clip with tensor
bounds (11)."""
MAX_OPSET = min(21, onnx.defs.onnx_opset_version())
"""The newest ai.onnx opset at which every node the pass emits has an ONNX Runtime CPU kernel: from opset 22
on, the read-noise ``RandomNormalLike`` has none (onnxruntime 1.32), so a deployed model would not load."""

_FLOAT = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def opset_of(model: onnx.ModelProto) -> int | None:
    """The model's ai.onnx opset, or None when it declares none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def check_opset(model: onnx.ModelProto, name: str, error: type[Exception] = ExportError) -> int:
    """The model's ai.onnx opset; ``error`` when it is missing or outside ``MIN_OPSET``..``MAX_OPSET``."""
    v = opset_of(model)
    if v is None or not MIN_OPSET <= v <= MAX_OPSET:
        have = "declares no ai.onnx opset (a truncated file?)" if v is None else f"has ai.onnx opset {v}"
        raise error(f"{name}: opset_import: the model {have}; the device graph pass supports opsets "
                    f"{MIN_OPSET}..{MAX_OPSET} (ONNX Runtime runs the nodes it inserts there): re-export the float model with --opset N in that range (or convert "
                    "it with onnx.version_converter)")
    return v


def check_onnx(model: onnx.ModelProto, name: str, error: type[Exception] = ExportError) -> None:
    """Everything in the module doc, for a float or deployed model; the first problem as one ``error`` line."""
    g = model.graph
    if not g.node:
        raise error(f"{name}: not a valid ONNX model (empty graph)")
    inits = {i.name for i in g.initializer}
    for inp in g.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        if not inp.type.tensor_type.HasField("shape"):
            raise error(f"{name}: graph input {inp.name!r} has no shape; the device pass and the evaluator need "
                        "its rank: export the model with a fixed input shape such as N x C x H x W (symbolic batch, "
                        "height and width are allowed)")
    check_opset(model, name, error)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise error(f"{name}: not a valid ONNX model (onnx.checker: {_first_line(e)})") from None
    except ValueError:  # over protobuf's 2 GB: the checker needs the file; ORT reports what is wrong with it
        pass
    check_finite_onnx(model, name, error)


def check_finite_onnx(model: onnx.ModelProto, name: str, error: type[Exception] = ExportError) -> None:
    """No NaN in float initializers or Constant nodes; no +-Inf in what a crossbar op reads."""
    from nft_deploy.converters.handlers import handler_for

    g = model.graph
    crossbar = {t for n in g.node if handler_for(n.op_type) for t in n.input}
    tensors = [(t.name, t) for t in g.initializer if t.data_type in _FLOAT]
    for n in g.node:
        if n.op_type == "Constant":
            tensors += [(n.output[0], a.t) for a in n.attribute if a.name == "value" and a.t.data_type in _FLOAT]
    for tname, t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            continue  # external data is checked where it is loaded
        check_finite_array(numpy_helper.to_array(t), f"{name}: initializer {tname!r}", error,
                           allow_inf=tname not in crossbar)


def check_finite_array(values, what: str, error: type[Exception] = ExportError, allow_inf: bool = False) -> None:
    """``error`` naming ``what`` when a float array holds NaN (or Inf, unless ``allow_inf``)."""
    a = np.asarray(values)
    if a.dtype.kind != "f":
        return
    bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        kinds = " and ".join(k for k, m in (("NaN", np.isnan(a)), ("Inf", np.isinf(a))) if (m & bad).any())
        raise error(f"{what}: {int(bad.sum())} {kinds} value(s) of {a.size} (first at index {list(first)}); "
                    "weights must be finite: a device simulation of NaN/Inf weights is meaningless (fix or "
                    "retrain the model)")


def check_finite_state(state: dict, name: str, error: type[Exception] = ExportError) -> None:
    """No NaN or Inf in a state dict's float tensors (``name`` is the file, plus the field)."""
    for key, v in state.items():
        if hasattr(v, "is_floating_point") and v.is_floating_point():
            check_finite_array(v.detach().cpu().float().numpy(), f"{name}[{key!r}]", error)


def state_mismatch(module, state: dict, limit: int = 3) -> str | None:
    """How ``state`` does not fit ``module`` (missing, unexpected, shape mismatches, a few of each), or None."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches (file vs model)", shapes)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts) or None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


__all__ = ["MAX_OPSET", "MIN_OPSET", "check_finite_array", "check_finite_onnx", "check_finite_state", "check_onnx",
           "check_opset", "opset_of", "state_mismatch"]
