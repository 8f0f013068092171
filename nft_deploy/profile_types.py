"""The plain data of a device profile: frozen dataclasses with a docstring per field.

This file is the one definition of a valid profile. Each field carries its JSON limits in its metadata
(``min``, ``max``, ``choices``, ``items``, ``required``, ``const``, ``nonblank``); rules between fields
(``RULES``) and keys the JSON may carry but the dataclasses drop (``JSON_ONLY``) are in ``profile_rules``. ``nft_deploy.profiles``
validates JSON by walking these, and ``nft_deploy.profile_schema`` writes ``schema.json`` from them.
Import the classes from ``nft_deploy.profiles``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from dataclasses import dataclass, field
from typing import Any

from nft_deploy.converters.handlers import mappable_ops
from nft_deploy.errors import ProfileError

SCHEMA_VERSION = 1
SIGMA_UNITS = ("cell_range", "level")
SCALE_GRANULARITIES = ("per_layer", "per_channel")
MAPPABLE_OPS = mappable_ops()
"""The ONNX op types of the built-in op families (``nft_deploy.converters.handlers``), the default of
``mapping.op_types``. Validation asks the registry itself, so a family registered at run time is a valid
op type too; a profile lists it explicitly to map it."""
QUANT_STYLES = ("round_clip", "qdq")
DRIFT_LAWS = ("pcm", "constant", "table")
COMPENSATIONS = ("none", "global", "per_column")


def limits(default: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A dataclass field whose JSON limits sit beside it, so the validator and schema.json read one place.

    ``required=True`` makes the JSON state a field that Python code may leave at its default.
    """
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class WeightSpec:
    """How a weight is stored: M bits split over ceil(M/K) cells of K bits each."""

    bits: int = limits(8, min=1, max=16)
    """M: bits per weight magnitude (the sign lives in a differential pair). 1..16."""
    bits_per_cell: int = limits(2, min=1, max=16)
    """K: bits one cell stores; cells per weight = ceil(bits / bits_per_cell). 1..bits."""
    quantize: bool = True
    """True: weights are rounded to M bits. False: float weights, M and K only set the noise scale
    (the NFT reference model)."""
    scale: str = limits("per_layer", choices=SCALE_GRANULARITIES)
    """Range that maps to full conductance: max|W| of the whole layer, or of each output channel."""
    quant_style: str = limits("round_clip", choices=QUANT_STYLES)
    """ONNX form of weight quantization: Round/Clip/Mul nodes, or QuantizeLinear/DequantizeLinear."""

    @property
    def cells(self) -> int:
        """Cells per weight, ceil(M / K)."""
        return -(-self.bits // self.bits_per_cell)

    @property
    def levels(self) -> int:
        """Largest integer magnitude of a quantized weight, 2^M - 1."""
        return 2**self.bits - 1


@dataclass(frozen=True)
class StateDependence:
    """NeFT's state-dependent variation: mid-range states are noisier."""

    factor: float = limits(1.0, min=0.0, max=1e3, required=True)
    """s: std multiplier for weights with band[0] < |w|/scale < band[1] (1 RRAM1, 2 FeFET2, 4 RRAM4, 6 FeFET6)."""
    band: tuple[float, float] = limits((0.25, 0.75), items={"min": 0.0, "max": 1.0})
    """Open interval of |w|/scale that gets the factor."""
    renormalize_fraction: float | None = limits(0.4, min=0.0, max=1.0)
    """f: sigma is divided by sqrt(f s^2 + 1 - f) so the mean variance stays comparable; null: no renormalisation."""


@dataclass(frozen=True)
class ProgrammingVariation:
    """Device-to-device programming error: Gaussian per cell, fixed once a chip is programmed."""

    sigma: float = limits(0.0, min=0.0, max=10.0, required=True)
    """Std of the additive Gaussian error of each cell's conductance, in ``unit``. >= 0."""
    unit: str = limits("cell_range", choices=SIGMA_UNITS)
    """``cell_range``: fraction of a cell's full conductance range (NFT convention). ``level``: units of
    one conductance level, (2^K - 1) times smaller for the same number (SWIM convention)."""
    state_dependent: StateDependence | None = None
    """Optional state-dependent scaling (NeFT)."""


@dataclass(frozen=True)
class ReadNoise:
    """Cycle-to-cycle read noise: Gaussian per cell, redrawn on every inference."""

    sigma: float = limits(0.0, min=0.0, max=10.0, required=True)
    """Std per cell read, in ``unit``. >= 0; 0 disables read noise."""
    unit: str = limits("cell_range", choices=SIGMA_UNITS)
    """Same conventions as programming variation."""


@dataclass(frozen=True)
class StuckAt:
    """Stuck-at faults: cells that ignore programming, fixed per chip."""

    zero_rate: float = limits(0.0, min=0.0, max=1.0)
    """Probability that a cell is stuck at zero conductance. 0..1."""
    full_rate: float = limits(0.0, min=0.0, max=1.0)
    """Probability that a cell is stuck at full conductance. 0..1, with zero_rate + full_rate <= 1."""


@dataclass(frozen=True)
class IOSpec:
    """Converters at the crossbar boundary."""

    input_bits: int | None = limits(None, min=2, max=16)
    """Input DAC resolution (signed, dynamic range per tensor); null: ideal inputs."""
    output_bits: int | None = limits(None, min=2, max=16)
    """Output ADC resolution (signed, dynamic range per tensor); null: ideal outputs."""


@dataclass(frozen=True)
class Drift:
    """Conductance drift, g(t) = g_prog (t / t0)^-nu per cell, with one nu per cell drawn once per chip
    (``nft_deploy.drift`` states how g relates to the weights). Optional: a profile without it does not drift."""

    law: str = limits("pcm", choices=DRIFT_LAWS)
    """How nu depends on the cell's target conductance g (normalised to its maximum), nu = |mu_nu + sigma_nu
    N(0,1)|: ``pcm`` (the PCM model of IBM aihwkit: mu_nu = clip(-0.0155 ln g + 0.0244, 0.049, 0.1), sigma_nu =
    clip(-0.0125 ln g - 0.0059, 0.008, 0.045)); ``constant`` (mu_nu = nu, sigma_nu = nu_std); ``table``
    (mu_nu and sigma_nu interpolated linearly in g between the ``table`` points, constant beyond its ends)."""
    t0: float = limits(20.0, min=1e-6, max=1e6)
    """Seconds after programming at which g_prog is read (the reference time; a read before it is a read at t0)."""
    nu: float = limits(0.05, min=0.0, max=1.0)
    """mu_nu of the ``constant`` law."""
    nu_std: float = limits(0.0, min=0.0, max=1.0)
    """sigma_nu of the ``constant`` law (0: every cell drifts with exactly ``nu``)."""
    table: tuple[tuple[float, float, float], ...] = limits((), items={"items": {"min": 0.0, "max": 1.0}})
    """Points [g, mu_nu, sigma_nu] of the ``table`` law, g strictly increasing, each value in [0, 1]."""
    compensation: str = limits("none", choices=COMPENSATIONS)
    """Digital drift compensation after each array: ``none``; ``global`` (one scale per layer per chip: mean
    |output| of the calibration read at t0 over the same read at t); ``per_column`` (one per output channel)."""
    read_noise: bool = False
    """Add the time-dependent PCM read noise, std = g(t) Q sqrt(ln((t + t_read) / (2 t_read))) per cell with
    Q = min(0.0088 / g^0.65, 0.2), redrawn on every inference (on top of ``read_noise``)."""
    t_read: float = limits(250e-9, min=1e-12, max=1.0)
    """Read pulse width of the time-dependent read noise (s)."""
    train_time: float | None = limits(None, min=0.0)
    """Training draws drift (and applies the compensation) at this many seconds after programming; null:
    training sees no drift."""


@dataclass(frozen=True)
class ArraySpec:
    """Crossbar arrays a mapped layer is split into (``nft_deploy.arrays`` states the tiling rule)."""

    rows: int = limits(128, min=1, max=65536)
    """Word lines per array: a layer's input dimension is split into row tiles of at most this many rows."""
    cols: int = limits(128, min=1, max=65536)
    """Bit lines per array: outputs x cells per weight (x 2 if differential) are split into column tiles."""
    differential: bool = True
    """Signed weights on a differential pair of columns (two bit lines per cell); false: one column per cell."""


@dataclass(frozen=True)
class LayerOverride:
    """Replacement sections for the layers whose name matches ``layers`` (a glob)."""

    layers: str
    """fnmatch glob over layer names (torch module path, e.g. ``features.0``; in ONNX the weight name
    without ``.weight``)."""
    weights: WeightSpec | None = None
    """Replaces the profile's ``weights`` section for matching layers."""
    programming: ProgrammingVariation | None = None
    """Replaces ``programming`` for matching layers."""
    read_noise: ReadNoise | None = None
    """Replaces ``read_noise`` for matching layers."""
    stuck_at: StuckAt | None = None
    """Replaces ``stuck_at`` for matching layers."""


@dataclass(frozen=True)
class Mapping:
    """Which layers are programmed onto crossbars."""

    op_types: tuple[str, ...] = limits(MAPPABLE_OPS, items={"choices": mappable_ops})
    """ONNX op types mapped to crossbars (torch: Conv* and Linear). Subset of Conv, Gemm, MatMul, ConvTranspose."""
    digital_layers: tuple[str, ...] = ()
    """Globs of layer names kept digital (noise-free, float)."""
    overrides: tuple[LayerOverride, ...] = ()
    """Per-layer replacements; the first matching override wins."""


SIGMA_HELP = ("Programming sigma S (profile unit) for this run: the profile's top-level programming.sigma "
              "becomes S and every per-layer override keeps its ratio to it (an override at 3x stays at 3x). "
              "The same meaning in train, export, plan, evaluate, compare, check and sweep.")
"""The help of every ``--sigma`` flag: the one meaning that ``DeviceProfile.with_sigma`` implements."""


@dataclass(frozen=True)
class DeviceProfile:
    """A complete device description: how weights are stored and how the device disturbs them."""

    name: str = limits(nonblank=True)
    """Short identifier, e.g. ``rram_4bit``."""
    weights: WeightSpec = field(default_factory=WeightSpec)
    """Weight storage."""
    programming: ProgrammingVariation = field(default_factory=ProgrammingVariation)
    """Programming variation, fixed per chip."""
    read_noise: ReadNoise = field(default_factory=ReadNoise)
    """Read noise, redrawn per inference."""
    stuck_at: StuckAt = field(default_factory=StuckAt)
    """Stuck-at faults, fixed per chip."""
    io: IOSpec = field(default_factory=IOSpec)
    """Input DAC / output ADC."""
    mapping: Mapping = field(default_factory=Mapping)
    """Layer selection."""
    drift: Drift | None = None
    """Conductance drift over time (optional; null: none). Same for every mapped layer."""
    array: ArraySpec | None = None
    """Crossbar array size (optional; null: every layer is one ideal array, one ADC on the full sum)."""
    description: str = ""
    """One line for humans."""
    source: str = ""
    """Where the numbers come from (paper, datasheet, measurement)."""
    schema_version: int = limits(SCHEMA_VERSION, const=SCHEMA_VERSION, required=True)
    """JSON schema version; only 1 exists (``drift`` is an optional section of version 1)."""

    def with_sigma(self, sigma: float) -> DeviceProfile:
        """The profile evaluated at programming sigma ``sigma``: the one meaning of ``--sigma``.

        The top-level ``programming.sigma`` becomes ``sigma``, and every override keeps its own ratio to
        it (an override at 3x the top level stays at 3x; one at 0 stays noise-free). A profile whose
        top-level sigma is 0 has no ratio to keep, so an override with its own sigma > 0 is an error there.
        """
        if not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and math.isfinite(sigma)
                and sigma >= 0):
            raise ProfileError(f"{self.name}: --sigma: must be a finite number >= 0, got {sigma!r}")
        top = self.programming.sigma
        overrides = []
        for i, o in enumerate(self.mapping.overrides):
            if o.programming is not None and o.programming.sigma > 0:
                if top == 0:
                    raise ProfileError(
                        f"{self.name}: mapping.overrides[{i}].programming.sigma: --sigma {sigma:g} keeps each "
                        f"override's ratio to the top-level programming.sigma, which is 0 here; set a top-level "
                        f"sigma > 0 or give the override no programming section")
                o = dataclasses.replace(o, programming=dataclasses.replace(
                    o.programming, sigma=o.programming.sigma * sigma / top))
            overrides.append(o)
        return dataclasses.replace(
            self,
            programming=dataclasses.replace(self.programming, sigma=float(sigma)),
            mapping=dataclasses.replace(self.mapping, overrides=tuple(overrides)),
        )

    def digital_glob(self, layer: str) -> str | None:
        """The first ``mapping.digital_layers`` glob that keeps ``layer`` digital, or None."""
        return next((g for g in self.mapping.digital_layers if fnmatch.fnmatchcase(layer, g)), None)

    def for_layer(self, layer: str) -> DeviceProfile:
        """The profile as it applies to one layer: the first matching override's sections replace ours."""
        for o in self.mapping.overrides:
            if fnmatch.fnmatchcase(layer, o.layers):
                changes = {
                    k: getattr(o, k)
                    for k in ("weights", "programming", "read_noise", "stuck_at")
                    if getattr(o, k) is not None
                }
                return dataclasses.replace(self, **changes)
        return self

    @property
    def is_noisy(self) -> bool:
        """True when any programming, read or stuck-at noise or drift is configured (overrides included)."""
        sections = [self] + [
            dataclasses.replace(self, **{k: getattr(o, k) for k in ("programming", "read_noise", "stuck_at")
                                         if getattr(o, k) is not None})
            for o in self.mapping.overrides
        ]
        return self.drift is not None or any(
            s.programming.sigma > 0 or s.read_noise.sigma > 0 or s.stuck_at.zero_rate + s.stuck_at.full_rate > 0
            for s in sections
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``profile_from_dict(p.to_dict()) == p``."""
        return _to_jsonable(self)

    def to_json(self) -> str:
        """Pretty JSON text of the profile."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return [_to_jsonable(v) for v in obj] if isinstance(obj, tuple) else obj
