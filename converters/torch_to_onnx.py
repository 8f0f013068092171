"""torch.nn.Module -> float ONNX: the dynamo exporter first, the TorchScript exporter as a fallback.

Both keep batch-norm as separate nodes (training puts noise on the unfolded conv weight; folding BN
into the weight before the noise would change the device model) and keep torch parameter names as
initializer names (``fc1.weight``), so a layer's ONNX name equals its torch module path. The dynamo
exporter's default optimizer would fuse BN into the conv weight under the same name, so it runs with
``optimize=False`` followed by constant folding only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass

import onnx
import torch

from nft_deploy.errors import ExportError

EXPORTERS = ("auto", "dynamo", "torchscript")


@dataclass(frozen=True)
class TorchExportConfig:
    """How to export a module."""

    opset: int | None = None
    """ONNX opset; None: the exporter's default (dynamo) or 18 (TorchScript)."""
    exporter: str = "auto"
    """``auto`` (dynamo, TorchScript on failure), ``dynamo`` or ``torchscript``."""
    dynamic_batch: bool = True
    """Leading dimension of the input (and output) is symbolic: ``batch``."""


@dataclass(frozen=True)
class TorchExport:
    """A float ONNX model and how it was made."""

    model: onnx.ModelProto
    exporter: str
    """``dynamo`` or ``torchscript``."""
    fallback_reason: str | None = None
    """Why dynamo was not used, when the TorchScript exporter was the fallback."""


def torch_to_onnx(module: torch.nn.Module, sample: torch.Tensor,
                  config: TorchExportConfig = TorchExportConfig()) -> TorchExport:
    """Export ``module`` in eval mode for inputs shaped like ``sample`` (batch >= 2 for a dynamic batch)."""
    if config.exporter not in EXPORTERS:
        raise ExportError(f"exporter: must be one of {', '.join(EXPORTERS)}; got {config.exporter!r}")
    module = module.eval()
    reason = None
    if config.exporter in ("auto", "dynamo") and not isinstance(module, torch.jit.ScriptModule):
        try:
            return TorchExport(_dynamo(module, sample, config), "dynamo")
        except Exception as e:  # noqa: BLE001  - any exporter failure means: try the other exporter
            if config.exporter == "dynamo":
                raise ExportError(f"torch dynamo export failed: {_first_line(e)}") from None
            reason = _first_line(e)
    try:
        return TorchExport(_torchscript(module, sample, config), "torchscript", reason)
    except Exception as e:  # noqa: BLE001
        extra = f"; dynamo failed first: {reason}" if reason else ""
        raise ExportError(f"torch export failed: {_first_line(e)}{extra}") from None


def _dynamo(module: torch.nn.Module, sample: torch.Tensor, config: TorchExportConfig) -> onnx.ModelProto:
    import onnxscript.optimizer as oo

    dyn = ({0: torch.export.Dim("batch")},) if config.dynamic_batch else None
    with _quiet():
        prog = torch.onnx.export(module, (sample,), dynamo=True, external_data=False, optimize=False,
                                 opset_version=config.opset, dynamic_shapes=dyn, verbose=False)
    oo.fold_constants(prog.model)
    oo.remove_unused_nodes(prog.model)
    return prog.model_proto


def _torchscript(module: torch.nn.Module, sample: torch.Tensor, config: TorchExportConfig) -> onnx.ModelProto:
    import onnxscript.optimizer as oo

    buf = io.BytesIO()
    axes = {"x": {0: "batch"}, "logits": {0: "batch"}} if config.dynamic_batch else None
    with _quiet():
        torch.onnx.export(module, (sample,), buf, dynamo=False, opset_version=config.opset or 18,
                          do_constant_folding=False, training=torch.onnx.TrainingMode.EVAL,
                          input_names=["x"], output_names=["logits"], dynamic_axes=axes)
    model = onnx.load_from_string(buf.getvalue())
    oo.fold_constants(model)
    oo.remove_unused_nodes(model)
    return model


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' warnings and log lines (torchvision notices, deprecations)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, lv in zip(loggers, levels, strict=True):
                lg.setLevel(lv)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"
