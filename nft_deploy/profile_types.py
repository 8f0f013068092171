"""The plain data of a device profile: frozen dataclasses with a docstring per field.

``nft_deploy.profiles`` validates JSON into these and re-exports them; import from there.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from dataclasses import dataclass, field
from typing import Any

from nft_deploy.errors import ProfileError

SCHEMA_VERSION = 1
SIGMA_UNITS = ("cell_range", "level")
SCALE_GRANULARITIES = ("per_layer", "per_channel")
MAPPABLE_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
QUANT_STYLES = ("round_clip", "qdq")


@dataclass(frozen=True)
class WeightSpec:
    """How a weight is stored: M bits split over ceil(M/K) cells of K bits each."""

    bits: int = 8
    """M: bits per weight magnitude (the sign lives in a differential pair). 1..16."""
    bits_per_cell: int = 2
    """K: bits one cell stores; cells per weight = ceil(bits / bits_per_cell). 1..bits."""
    quantize: bool = True
    """True: weights are rounded to M bits. False: float weights, M and K only set the noise scale
    (the NFT reference model)."""
    scale: str = "per_layer"
    """Range that maps to full conductance: max|W| of the whole layer, or of each output channel."""
    quant_style: str = "round_clip"
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

    factor: float = 1.0
    """s: std multiplier for weights with band[0] < |w|/scale < band[1] (1 RRAM1, 2 FeFET2, 4 RRAM4, 6 FeFET6)."""
    band: tuple[float, float] = (0.25, 0.75)
    """Open interval of |w|/scale that gets the factor."""
    renormalize_fraction: float | None = 0.4
    """f: sigma is divided by sqrt(f s^2 + 1 - f) so the mean variance stays comparable; null: no renormalisation."""


@dataclass(frozen=True)
class ProgrammingVariation:
    """Device-to-device programming error: Gaussian per cell, fixed once a chip is programmed."""

    sigma: float = 0.0
    """Std of the additive Gaussian error of each cell's conductance, in ``unit``. >= 0."""
    unit: str = "cell_range"
    """``cell_range``: fraction of a cell's full conductance range (NFT convention). ``level``: units of
    one conductance level, (2^K - 1) times smaller for the same number (SWIM convention)."""
    state_dependent: StateDependence | None = None
    """Optional state-dependent scaling (NeFT)."""


@dataclass(frozen=True)
class ReadNoise:
    """Cycle-to-cycle read noise: Gaussian per cell, redrawn on every inference."""

    sigma: float = 0.0
    """Std per cell read, in ``unit``. >= 0; 0 disables read noise."""
    unit: str = "cell_range"
    """Same conventions as programming variation."""


@dataclass(frozen=True)
class StuckAt:
    """Stuck-at faults: cells that ignore programming, fixed per chip."""

    zero_rate: float = 0.0
    """Probability that a cell is stuck at zero conductance. 0..1."""
    full_rate: float = 0.0
    """Probability that a cell is stuck at full conductance. 0..1, with zero_rate + full_rate <= 1."""


@dataclass(frozen=True)
class IOSpec:
    """Converters at the crossbar boundary."""

    input_bits: int | None = None
    """Input DAC resolution (signed, dynamic range per tensor); null: ideal inputs."""
    output_bits: int | None = None
    """Output ADC resolution (signed, dynamic range per tensor); null: ideal outputs."""


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

    op_types: tuple[str, ...] = MAPPABLE_OPS
    """ONNX op types mapped to crossbars (torch: Conv* and Linear). Subset of Conv, Gemm, MatMul, ConvTranspose."""
    digital_layers: tuple[str, ...] = ()
    """Globs of layer names kept digital (noise-free, float)."""
    overrides: tuple[LayerOverride, ...] = ()
    """Per-layer replacements; the first matching override wins."""


@dataclass(frozen=True)
class DeviceProfile:
    """A complete device description: how weights are stored and how the device disturbs them."""

    name: str
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
    description: str = ""
    """One line for humans."""
    source: str = ""
    """Where the numbers come from (paper, datasheet, measurement)."""
    schema_version: int = SCHEMA_VERSION
    """JSON schema version; only 1 exists."""

    def with_sigma(self, sigma: float) -> DeviceProfile:
        """The same profile with programming sigma replaced (in the profile's unit), overrides included."""
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma >= 0):
            raise ProfileError(f"{self.name}: programming.sigma: must be a finite number >= 0, got {sigma!r}")
        overrides = tuple(
            dataclasses.replace(o, programming=dataclasses.replace(o.programming, sigma=sigma))
            if o.programming is not None
            else o
            for o in self.mapping.overrides
        )
        return dataclasses.replace(
            self,
            programming=dataclasses.replace(self.programming, sigma=sigma),
            mapping=dataclasses.replace(self.mapping, overrides=overrides),
        )

    def is_digital(self, layer: str) -> bool:
        """True when ``layer`` matches a ``mapping.digital_layers`` glob."""
        return any(fnmatch.fnmatchcase(layer, g) for g in self.mapping.digital_layers)

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
        """True when any programming, read or stuck-at noise is configured (overrides included)."""
        sections = [self] + [
            dataclasses.replace(self, **{k: getattr(o, k) for k in ("programming", "read_noise", "stuck_at")
                                         if getattr(o, k) is not None})
            for o in self.mapping.overrides
        ]
        return any(
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
    if isinstance(obj, tuple):
        return [_to_jsonable(v) for v in obj]
    return obj
