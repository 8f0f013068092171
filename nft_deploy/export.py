"""Export a trained model to a CIM-deployed ONNX file: the Python API behind ``nft-deploy export``.

``export_model`` loads the source (never running code from it unless trusted), exports torch models
to float ONNX, runs the device graph pass (``insert_device_nodes``) and writes the result atomically.
The written model runs in stock ONNX Runtime; its per-chip graph inputs and metadata are described in
``nft_deploy.chips``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch

from nft_deploy.atomic import atomic_write_bytes, check_writable
from nft_deploy.converters.graph_pass import PassConfig, run_pass
from nft_deploy.converters.loaders import LoadedSource, load_source, source_profile
from nft_deploy.converters.report import PassReport
from nft_deploy.converters.torch_to_onnx import TorchExportConfig, torch_to_onnx
from nft_deploy.errors import ExportError
from nft_deploy.profiles import DeviceProfile, load_profile


@dataclass
class ExportResult:
    """What ``export_model`` produced."""

    model: onnx.ModelProto
    """The deployed (or, with ``no_device``, float) ONNX model."""
    output: Path | None
    """Where it was written; None for an in-memory source without ``output``."""
    source_kind: str
    """checkpoint, state_dict, torchscript, onnx, pickled_module or module."""
    exporter: str
    """dynamo, torchscript, or ``none`` for an ONNX source."""
    profile: DeviceProfile | None
    """The profile after any sigma override (None with ``no_device``)."""
    report: PassReport | None
    """The graph pass report (None with ``no_device``)."""
    export_seconds: float = 0.0
    pass_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    """Things a user should know (exporter fallback, weights whose ONNX name differs from torch)."""

    def summary(self) -> list[str]:
        """The one-screen report."""
        where = str(self.output) if self.output else "(in memory)"
        head = f"Wrote    | {where} | from {self.source_kind} via {self.exporter} in {self.export_seconds:.2f}s"
        lines = [head]
        if self.report is not None:
            lines.append(f"Profile  | {self.profile.name} | pass {self.pass_seconds:.2f}s")
            lines += self.report.summary()
        else:
            lines.append("Float    | --no-device: no device nodes (clean baseline)")
        return lines + [f"Note: {n}" for n in self.notes]


def insert_device_nodes(onnx_model: onnx.ModelProto, profile: str | Path | DeviceProfile, *,
                        sigma: float | None = None, read_seed: int = 0,
                        source_sha256: str | None = None) -> tuple[onnx.ModelProto, PassReport]:
    """The device graph pass on a float ONNX model (which is not modified): a new model and its report."""
    prof = _resolve_profile(profile, sigma)
    return run_pass(onnx_model, prof, PassConfig(read_seed=read_seed, source_sha256=source_sha256))


def export_model(source: str | Path | torch.nn.Module | onnx.ModelProto, *,
                 profile: str | Path | DeviceProfile | None, output: str | Path | None = None,
                 model: str | None = None, model_kwargs: dict[str, Any] | None = None, no_device: bool = False,
                 trust_checkpoint: bool = False, sigma: float | None = None,
                 input_shape: tuple[int, ...] | None = None, opset: int | None = None, exporter: str = "auto",
                 read_seed: int = 0, calibrate: str | None = None, calibration_samples: int = 256,
                 percentile: float = 99.99, adc_range: str = "percentile", adc_ranges_per: str = "row_tile"
                 ) -> ExportResult:
    """Source -> (float ONNX) -> deployed ONNX, written atomically to ``output`` (default
    ``<input stem>.cim.onnx``, or ``<stem>.float.onnx`` with ``no_device``). ``calibrate`` (a data set, as
    ``evaluate --data`` takes it): fixed converter ranges from the first ``calibration_samples`` training
    samples at ``percentile``; ``adc_range="max"``: each ADC at its array's worst-case partial sum instead;
    ``adc_ranges_per="array"``: one ADC range per array instead of per row tile (``nft_deploy.calibration``)."""
    from nft_deploy.calibration import ADC_RANGES, check_per

    check_per(adc_ranges_per)
    if adc_range not in ADC_RANGES:
        raise ExportError(f"--adc-range: {adc_range!r} is not one of {', '.join(ADC_RANGES)}")
    if adc_range != "percentile" and calibrate is None:
        raise ExportError(f"--adc-range {adc_range}: needs --calibrate DATA (the DAC ranges bound the arrays' "
                          "inputs)")
    if adc_ranges_per != "row_tile" and calibrate is None:
        raise ExportError(f"--adc-ranges-per {adc_ranges_per}: needs --calibrate DATA (it says what one "
                          "calibrated ADC range covers)")
    prof = None if no_device or profile is None else _resolve_profile(profile, sigma)
    out_path = _output_path(source, output, no_device)
    if out_path is not None:
        check_writable(out_path)  # before the export: a bad path fails now, not after the work
    src = load_source(source, model=model, model_kwargs=model_kwargs, trust_checkpoint=trust_checkpoint,
                      input_shape=input_shape)
    if prof is None and not no_device:  # a checkpoint is exported on the profile it was trained against
        prof = _resolve_profile(source_profile(src), sigma)
    t0 = time.perf_counter()
    float_model, used, notes = _float_model(src, _opset_for(prof, opset, src), exporter)
    t1 = time.perf_counter()
    report = None
    if prof is not None:
        ranges = (_calibrated(float_model, prof, calibrate, calibration_samples, percentile, adc_range,
                              adc_ranges_per) if calibrate is not None else None)
        deployed, report = run_pass(float_model, prof, PassConfig(read_seed=read_seed, source_sha256=src.sha256,
                                                                  ranges=ranges))
        notes += _plan_notes(src, prof, report)
    else:
        deployed = float_model
    t2 = time.perf_counter()
    try:
        onnx.checker.check_model(deployed)
    except onnx.checker.ValidationError as e:  # a bug in the pass, not user input: keep the trace
        raise RuntimeError(f"the exported model does not pass onnx.checker: {e}") from e
    if out_path is not None:
        atomic_write_bytes(out_path, deployed.SerializeToString())
    return ExportResult(deployed, out_path, src.kind, used, prof, report, t1 - t0, t2 - t1, notes)


def _calibrated(float_model: onnx.ModelProto, prof: DeviceProfile, data: str, samples: int, percentile: float,
                adc_range: str, per: str):
    """Converter ranges from the first ``samples`` training samples of ``data`` (``--calibrate``)."""
    from nft_deploy.calibration import calibrate
    from nft_deploy.data import load_data

    if samples < 1:
        raise ExportError(f"--calibration-samples: must be >= 1, got {samples}")
    ds = load_data(str(data), limit_train=samples, limit_test=1)
    if isinstance(ds.x_train, dict):
        raise ExportError(f"--calibrate {data}: a data set with several named inputs cannot calibrate yet")
    return calibrate(float_model, prof, ds.x_train[:samples], percentile, adc_range=adc_range, per=per)


def _resolve_profile(profile: str | Path | DeviceProfile | None, sigma: float | None) -> DeviceProfile:
    if profile is None:
        raise ExportError("--profile: required (a built-in name such as rram_4bit, or a .json path) unless "
                          "--no-device or the source is a checkpoint that stores its profile")
    return load_profile(profile, sigma)


def _output_path(source: Any, output: str | Path | None, no_device: bool) -> Path | None:
    if output is not None:
        return Path(output)
    if not isinstance(source, (str, Path)):
        return None
    src = Path(source)
    stem = src.name[: -len(".onnx")] if src.name.endswith(".onnx") else src.stem
    return src.with_name(stem + (".float.onnx" if no_device else ".cim.onnx"))


def _opset_for(prof: DeviceProfile | None, opset: int | None, src: LoadedSource) -> int | None:
    """QDQ with more than 7-bit weights needs int16 QuantizeLinear (opset 21): pick it when not given."""
    if opset is not None or prof is None or src.onnx_model is not None:
        return opset
    specs = [prof.weights] + [o.weights for o in prof.mapping.overrides if o.weights is not None]
    return 21 if any(s.quantize and s.quant_style == "qdq" and s.levels > 127 for s in specs) else None


def _float_model(src: LoadedSource, opset: int | None, exporter: str) -> tuple[onnx.ModelProto, str, list[str]]:
    """The float ONNX model of a source, the exporter used and notes for the user."""
    if src.onnx_model is not None:
        if opset is not None:
            current = next((o.version for o in src.onnx_model.opset_import if o.domain in ("", "ai.onnx")), None)
            if current != opset:
                raise ExportError(f"--opset {opset}: the source is already ONNX (opset {current}); "
                                  f"convert it first or drop --opset")
        return src.onnx_model, "none", []
    sample = torch.rand((2, *src.input_shape))
    exp = torch_to_onnx(src.module, sample, TorchExportConfig(opset=opset, exporter=exporter))
    notes = []
    if exp.fallback_reason:
        notes.append(f"dynamo export failed ({exp.fallback_reason}); used the TorchScript exporter")
    return exp.model, exp.exporter, notes


def _plan_notes(src: LoadedSource, prof: DeviceProfile, report: PassReport) -> list[str]:
    """Where the torch plan (what training perturbs) and the graph's plan (what is deployed) differ."""
    if src.module is None or isinstance(src.module, torch.jit.ScriptModule):
        return []
    from nft_deploy.device_plan import differences
    from nft_deploy.training.crossbars import torch_plan

    diff = differences(torch_plan(src.module, prof, torch.zeros((2, *src.input_shape))), report.plan)
    if not diff:
        return []
    return [f"training and the deployed graph plan {len(diff)} layer(s) differently: {'; '.join(diff[:4])}"
            f"{'; ...' if len(diff) > 4 else ''}. Chip draws and noise do not line up there (a weight the "
            "exporter renamed or transposed, a view or parametrization of a parameter, or a composite torch "
            "op); `nft-deploy plan` shows both sides"]


__all__ = ["ExportResult", "export_model", "insert_device_nodes"]
