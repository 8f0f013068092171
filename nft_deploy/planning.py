"""``nft_deploy.plan(...)``: the device plan of a model on a profile, the API behind ``nft-deploy plan``.

Shows, before any training or export, which layers a device maps and how: one row per weight-bearing
layer (mapped or digital and why, sigma, weight noise in units of max|W|, cells, DAC/ADC bits). The rows
are the ones every engine reads: a torch model is planned by ``training.crossbars.torch_plan``, a float ONNX model
by the graph pass's handlers, a deployed ONNX model carries its plan in metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nft_deploy.device_plan import DevicePlan
from nft_deploy.errors import ExportError
from nft_deploy.profiles import DeviceProfile, load_profile


def plan(model, profile: str | Path | DeviceProfile | None = None, *, sigma: float | None = None,
         model_name: str | None = None, model_kwargs: dict[str, Any] | None = None,
         input_shape: tuple[int, ...] | None = None, trust_checkpoint: bool = False) -> DevicePlan:
    """The device plan of ``model`` (a checkpoint, a state dict with ``model_name``, an ``.onnx`` file, an
    ``nn.Module`` with ``input_shape`` or an ``onnx.ModelProto``) on ``profile`` at ``sigma``.

    A checkpoint defaults to its stored profile; a deployed ONNX model has its plan (``profile`` must then
    be None; ``sigma`` still applies).
    """
    return plan_with_noise(model, profile, sigma=sigma, model_name=model_name, model_kwargs=model_kwargs,
                           input_shape=input_shape, trust_checkpoint=trust_checkpoint)[0]


def plan_with_noise(model, profile: str | Path | DeviceProfile | None = None, *, sigma: float | None = None,
                    model_name: str | None = None, model_kwargs: dict[str, Any] | None = None,
                    input_shape: tuple[int, ...] | None = None, trust_checkpoint: bool = False
                    ) -> tuple[DevicePlan, dict[str, float]]:
    """``plan`` and, per mapped layer, its programming noise relative to its rms weight, from the model's own
    weights (``LayerPlan.noise_to_rms``): where the noise swamps a layer, noisy training may not converge."""
    from nft_deploy.converters.loaders import load_source, source_profile

    src = load_source(model, model=model_name, model_kwargs=model_kwargs, trust_checkpoint=trust_checkpoint,
                      input_shape=input_shape)
    if src.onnx_model is not None:
        result, weights = _onnx_plan(src.onnx_model, str(src.path or "<model>"), profile, sigma)
        return result, {lay.name: lay.noise_to_rms(weights[lay.weight]) for lay in result.mapped
                        if lay.weight in weights}
    if src.kind == "torchscript":
        raise ExportError(f"{src.path}: a TorchScript module runs no Python calls to probe; plan its ONNX export "
                          "instead (`nft-deploy export FILE --no-device --input-shape C,H,W`, then `plan` the .onnx)")
    import torch

    from nft_deploy.training.crossbars import torch_plan
    from nft_deploy.training.protocol import noise_to_rms

    prof = source_profile(src, profile)
    if prof is None:
        raise ExportError(f"{src.path or 'the model'}: --profile: required (the source stores no device profile); "
                          "give a built-in name such as rram_4bit or a .json path")
    device = next((p.device for p in src.module.parameters()), torch.device("cpu"))
    result = torch_plan(src.module, prof, torch.zeros((2, *src.input_shape), device=device), sigma)
    params = dict(src.module.named_parameters())
    return result, {lay.name: noise_to_rms(lay, params[lay.weight]) for lay in result.mapped if lay.weight in params}


def _onnx_plan(proto, name: str, profile, sigma: float | None) -> tuple[DevicePlan, dict]:
    """The plan of an ONNX model and its layers' weights by weight name (a deployed graph stores them under
    the plan's names; a float graph's are the pass's, after folding and renaming)."""
    from onnx import numpy_helper

    from nft_deploy.chips import META_PLAN
    from nft_deploy.converters.graph_pass import plan_graph_weights

    meta = {p.key: p.value for p in proto.metadata_props}
    if META_PLAN in meta:
        if profile is not None:
            raise ExportError(f"{name}: --profile: the model is already deployed; its plan is fixed (use --sigma, "
                              "or plan the float model or the checkpoint with another profile)")
        result = DevicePlan.from_json(meta[META_PLAN], f"{name}:{META_PLAN}").with_sigma(sigma)
        wanted = {lay.weight for lay in result.mapped}
        return result, {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer if i.name in wanted}
    if profile is None:
        raise ExportError(f"{name}: --profile: required for a float ONNX model (a built-in name or a .json path)")
    return plan_graph_weights(proto, load_profile(profile, sigma), name)


__all__ = ["plan", "plan_with_noise"]
