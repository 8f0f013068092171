"""The device plan: one compiled description of how a model sits on the device, read by every engine.

A plan is compiled once from the weights an engine found (``FoundWeight``: a torch probe or the ONNX
graph pass's handlers, both through the op-family registry), a profile and an optional ``--sigma``.
``compile_plan`` is the only place that decides, per weight-bearing layer, mapped or digital and why,
and resolves the layer's noise model (overrides, then sigma), cells per weight and DAC/ADC bits.
Training noise, the torch Monte Carlo, the graph pass, the evaluator's chip draws and the reports all
read the plan; nothing else decides.

Names: a layer is its weight's name without a trailing ``.weight``: the torch module path (``features.0``),
parameter and ONNX initializer (``features.0.weight``) name one layer, a bare ``torch.matmul`` parameter
(``proj``) is layer ``proj``; two weights with one layer name are refused.

``--sigma S`` (``DeviceProfile.with_sigma``): the top-level programming sigma becomes S and every
override keeps its ratio to it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from nft_deploy.arrays import Tiling, tiling, totals
from nft_deploy.converters.handlers import Decline, onnx_family
from nft_deploy.drift import DRIFT_INPUT_PREFIX, TIME_INPUT
from nft_deploy.errors import ExportError
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import DeviceProfile, profile_from_dict

SHARED_WEIGHT = Decline("weight also read outside a crossbar op")
"""Why a weight that something else reads too (a tied embedding, ``w.sum()``) stays digital: the graph
would perturb only the crossbar's copy while training perturbs every use, so both engines keep it exact."""

CHIP_INPUT_PREFIX = "nft.chip/"
STUCK_INPUT_PREFIX = "nft.stuck/"


def layer_name(weight_name: str) -> str:
    """Layer name = weight name without a trailing ``.weight`` (= the torch module path)."""
    return weight_name[: -len(".weight")] if weight_name.endswith(".weight") else weight_name


@dataclass(frozen=True)
class FoundWeight:
    """One use of a crossbar op that an engine found, before the profile is applied."""

    name: str
    """Layer name (see the module docstring)."""
    op: str
    """ONNX op type of the node the weight feeds (a registered family's: Conv, Gemm, MatMul, ConvTranspose...)."""
    weight: str | None
    """Weight tensor name (ONNX initializer = torch parameter path); None when the op has no constant weight."""
    shape: tuple[int, ...] = ()
    out_axis: int = 0
    decline: Decline | None = None
    """Why the op family cannot map this use (not constant, not 2-D), or None."""
    node: str | None = None
    """ONNX node name (graph side only)."""
    groups: int = 1
    """A convolution's ``group`` (1 otherwise): each group is its own matrix on its own arrays."""
    layout: Any = field(default=None, compare=False, repr=False)  # LayerPlan.layout
    nodes: tuple[str, ...] = field(default=(), compare=False)  # LayerPlan.nodes


@dataclass(frozen=True)
class LayerPlan:
    """One weight-bearing layer as every engine sees it."""

    name: str
    op: str
    weight: str | None
    shape: tuple[int, ...]
    out_axis: int
    """Output-channel axis of the stored weight (per-channel scale, stuck-at digits)."""
    mapped: bool
    reason: str
    """``mapped``, or why the layer stays digital."""
    device: DeviceProfile = field(repr=False, compare=False)
    """The profile as it applies to this layer (overrides and sigma resolved)."""
    chip_input: str | None = None
    """Graph input fed the chip's standard normals (None: no programming variation)."""
    stuck_input: str | None = None
    """Graph input fed the stuck-at delta (None: no stuck-at faults)."""
    node: str | None = None
    drift_input: str | None = None
    """Graph input fed the per-cell drift exponents (None: no drift; else the graph reads ``nft.time`` too)."""
    groups: int = 1
    """A convolution's ``group`` (1 otherwise)."""
    tiles: Tiling | None = field(default=None, compare=False)
    """The layer's arrays (``nft_deploy.arrays``); None without a profile ``array`` section or when digital."""
    dac_range: float | None = None
    """Calibrated DAC input range (``nft_deploy.calibration``); None: the full-scale range per sample."""
    adc_range: tuple[float | tuple[float, ...], ...] | None = None
    """Calibrated ADC ranges, one entry per row tile (one for a layer of one tile): a float its arrays share, or
    one per array of the row tile in (group, column tile) order (``arrays.adc_fixed``); None: full scale."""
    nodes: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """Graph side: every node that reads the weight where several do (each has its own converters); () for one."""
    layout: Any = field(default=None, compare=False, repr=False)
    """torch side: the parameter onto the graph's weight, which the row's shape, axis and chips describe
    (``OpFamily.layout``, ``training.crossbars.graph_layout``); None: the same layout."""

    @cached_property
    def noise(self) -> NoiseModel:
        """The layer's noise model (built once: training asks for it every step)."""
        return NoiseModel(self.device)

    def noise_to_rms(self, weight) -> float:
        """Programming-noise std relative to the rms weight: rms over cells of the closed-form per-weight std
        (quantization, state dependence and per-channel scales included) / rms(W); above 1 the noise swamps
        the weights. ``weight`` numpy or torch, in the graph's layout (``training.crossbars.graph_layout``)."""
        nm = self.noise
        w = np.asarray(weight.detach().cpu() if hasattr(weight, "detach") else weight, np.float64)
        rms = float(np.sqrt(np.mean(w * w)))
        if rms == 0:
            return math.inf
        scale = nm.scale(w, self.out_axis)
        std = nm.std_map(nm.quantize_normalised(w / scale)) * scale
        return float(np.sqrt(np.mean(std * std))) / rms

    @property
    def has_converters(self) -> bool:
        """Mapped, and its op family takes a DAC/ADC (a recurrent cell does not: ``recurrent``)."""
        family = onnx_family(self.op)
        return self.mapped and (family is None or family.converters)

    @property
    def input_bits(self) -> int | None:
        return self.device.io.input_bits if self.has_converters else None

    @property
    def output_bits(self) -> int | None:
        return self.device.io.output_bits if self.has_converters else None

    def to_dict(self) -> dict:
        """A row of ``plan --json`` (and of the deployed model's ``nft.plan`` metadata)."""
        d = {"name": self.name, "op": self.op, "weight": self.weight, "shape": list(self.shape),
             "out_axis": self.out_axis, "mapped": self.mapped, "reason": self.reason}
        if self.mapped:
            nm, w = self.noise, self.device.weights
            d.update(sigma=self.device.programming.sigma, sigma_unit=self.device.programming.unit,
                     weight_std=nm.weight_std, read_std=nm.read_std, bits=w.bits, cells=w.cells,
                     quantize=w.quantize, scale=w.scale, stuck_at=nm.has_stuck_at, input_bits=self.input_bits,
                     output_bits=self.output_bits, chip_input=self.chip_input, stuck_input=self.stuck_input)
            if self.drift_input:
                d.update(drift_input=self.drift_input, drift_law=self.device.drift.law,
                         compensation=self.device.drift.compensation, drift_read_noise=self.device.drift.read_noise)
            if self.tiles is not None:
                d["tiles"] = self.tiles.to_dict()
            if self.dac_range is not None or self.adc_range is not None:
                d.update(dac_range=self.dac_range, adc_range=None if self.adc_range is None else [
                    a if np.ndim(a) == 0 else list(a) for a in self.adc_range])
        if self.groups != 1:
            d["groups"] = self.groups
        if self.node is not None:
            d["node"] = self.node
        return d


@dataclass(frozen=True)
class DevicePlan:
    """Every weight-bearing layer of one model on one device at one sigma."""

    profile: DeviceProfile
    """The profile at the plan's sigma (``with_sigma`` applied)."""
    layers: tuple[LayerPlan, ...]

    @property
    def sigma(self) -> float:
        return self.profile.programming.sigma

    @property
    def mapped(self) -> list[LayerPlan]:
        return [lay for lay in self.layers if lay.mapped]

    @property
    def chip_inputs(self) -> list[str]:
        """Every graph input a chip is fed: per layer normals, stuck-at delta, drift exponents; then nft.time."""
        names = [n for lay in self.mapped for n in (lay.chip_input, lay.stuck_input, lay.drift_input) if n]
        return names + [TIME_INPUT] if self.drifts else names

    drifts = property(lambda self: any(lay.drift_input for lay in self.mapped), doc="A mapped layer drifts.")

    def with_sigma(self, sigma: float | None) -> DevicePlan:
        """The same layers at programming sigma ``sigma`` (graph inputs unchanged)."""
        if sigma is None:
            return self
        prof = self.profile.with_sigma(sigma)
        return replace(self, profile=prof,
                       layers=tuple(replace(lay, device=prof.for_layer(lay.name)) for lay in self.layers))

    def with_ranges(self, ranges: dict) -> DevicePlan:
        """The plan with calibrated converter ranges (layer -> (DAC range, ``LayerPlan.adc_range``)); a range
        for a layer the plan does not map is refused, never dropped (an engine would silently run it full
        scale while another uses the range)."""
        unknown = sorted(set(ranges) - {lay.name for lay in self.mapped})
        if unknown:
            raise ExportError(f"converter ranges for layers this plan does not map: {', '.join(unknown)} (the plan "
                              f"maps {', '.join(lay.name for lay in self.mapped) or 'none'})")
        return replace(self, layers=tuple(
            replace(lay, dac_range=ranges[lay.name][0], adc_range=ranges[lay.name][1]) if lay.name in ranges else lay
            for lay in self.layers))

    @property
    def ranges(self) -> dict:
        """The calibrated ranges, in ``with_ranges``'s form (empty when not calibrated)."""
        return {lay.name: (lay.dac_range, lay.adc_range) for lay in self.mapped
                if lay.dac_range is not None or lay.adc_range is not None}

    def to_dict(self) -> dict:
        d = {"profile": self.profile.name, "sigma": self.sigma, "sigma_unit": self.profile.programming.unit,
             "layers": [lay.to_dict() for lay in self.layers],
             "mapped": len(self.mapped), "digital": len(self.layers) - len(self.mapped)}
        if self.profile.array is not None:
            d["arrays"] = totals([lay.tiles for lay in self.mapped if lay.tiles is not None])
        return d

    def to_json(self) -> str:
        """Metadata form: the rows plus the full profile, so ``from_json`` rebuilds the plan."""
        return json.dumps({**self.to_dict(), "profile_json": self.profile.to_dict()})

    @classmethod
    def from_json(cls, text: str, origin: str = "<plan>") -> DevicePlan:
        doc = json.loads(text)
        prof = profile_from_dict(doc["profile_json"], f"{origin}:profile")
        layers = tuple(LayerPlan(name=d["name"], op=d["op"], weight=d["weight"], shape=tuple(d["shape"]),
                                 out_axis=d["out_axis"], mapped=d["mapped"], reason=d["reason"],
                                 device=prof.for_layer(d["name"]), chip_input=d.get("chip_input"),
                                 stuck_input=d.get("stuck_input"), node=d.get("node"),
                                 drift_input=d.get("drift_input"), groups=d.get("groups", 1),
                                 dac_range=d.get("dac_range"),
                                 adc_range=tuple(tuple(a) if isinstance(a, list) else a for a in d["adc_range"])
                                 if d.get("adc_range") else None)
                       for d in doc["layers"])
        return cls(prof, tuple(_tiled(lay) for lay in layers))


def compile_plan(found: Iterable[FoundWeight], profile: DeviceProfile, sigma: float | None = None, *,
                 strict: bool = True) -> DevicePlan:
    """The one rule: op type listed, mappable by its family, not a digital glob -> mapped; noise resolved.

    A fatal decline (a Conv or Gemm whose weight is not a constant, on a listed op type and not kept digital)
    stops an export: ``ExportError`` when ``strict``; otherwise (``nft-deploy plan``) a digital row whose
    reason says so."""
    prof = profile if sigma is None else profile.with_sigma(sigma)
    rows, names = [], {}
    for f in found:
        if f.weight is not None and names.setdefault(f.name, f.weight) != f.weight:
            raise ExportError(f"layer name {f.name!r}: two weights ({names[f.name]!r} and {f.weight!r}) have it; "
                              "profile globs and chip draws need one weight per layer name: rename one")
        rows.append(_row(f, prof, strict))
    return DevicePlan(prof, tuple(rows))


def _row(f: FoundWeight, prof: DeviceProfile, strict: bool = True) -> LayerPlan:
    glob = prof.digital_glob(f.name)
    if f.op not in prof.mapping.op_types:
        reason = f"op type {f.op} not in mapping.op_types"
    elif glob is not None:
        reason = f"mapping.digital_layers {glob!r}"
    elif f.decline is not None:
        fix = (f"remove {f.op} from the profile's mapping.op_types or keep it digital: "
               f'mapping.digital_layers ["{f.name}"]')
        if f.decline.fatal and strict:
            raise ExportError(f"node {f.node or f.name!r} ({f.op}): {f.decline.reason}; the device pass cannot map "
                              f"it. {fix[0].upper()}{fix[1:]}")
        reason = (f"{f.decline.reason}: cannot be mapped (export stops unless mapping.digital_layers lists it)"
                  if f.decline.fatal else f.decline.reason)
    else:
        reason = "mapped"
    device = prof.for_layer(f.name)
    lay = LayerPlan(f.name, f.op, f.weight, tuple(f.shape), f.out_axis, reason == "mapped", reason, device,
                    node=f.node, groups=f.groups, layout=f.layout, nodes=f.nodes)
    if not lay.mapped:
        return lay
    nm = lay.noise
    return _tiled(replace(lay, chip_input=CHIP_INPUT_PREFIX + f.name if nm.weight_std > 0 else None,
                          stuck_input=STUCK_INPUT_PREFIX + f.name if nm.has_stuck_at else None,
                          drift_input=DRIFT_INPUT_PREFIX + f.name if device.drift is not None else None))


def _tiled(lay: LayerPlan) -> LayerPlan:
    """The layer with its arrays, when it is mapped, converts (not a recurrent cell) and the profile has arrays."""
    spec = lay.device.array
    if spec is None or not lay.has_converters or len(lay.shape) < 2:
        return lay
    return replace(lay, tiles=tiling(lay.shape, lay.out_axis, lay.groups, lay.device.weights.cells, spec.rows,
                                     spec.cols, spec.differential, lay.name))


__all__ = ["CHIP_INPUT_PREFIX", "DRIFT_INPUT_PREFIX", "STUCK_INPUT_PREFIX", "TIME_INPUT", "DevicePlan", "FoundWeight",
           "LayerPlan", "compile_plan", "differences", "layer_name", "sigma_factors", "table"]

from nft_deploy.plan_compare import differences, sigma_factors  # noqa: E402  - re-exported public names
from nft_deploy.plan_table import table  # noqa: E402  - re-exported: device_plan.table is the public name
