"""Device profiles: the JSON description of a CIM device that training, export and evaluation share.

A profile is plain, frozen data. ``load_profile`` reads JSON (a built-in name or a path), validates
every field and raises ``ProfileError`` with the JSON path of the first bad field. ``to_dict`` gives the
JSON back, so ``from_dict(p.to_dict()) == p``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
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


# ---------------------------------------------------------------- validation


class _Reader:
    """Reads one JSON object, checking types and ranges, with the JSON path in every error."""

    def __init__(self, obj: Any, path: str, origin: str):
        self.path, self.origin = path, origin
        if not isinstance(obj, dict):
            self.fail(path, f"must be an object, got {_json_type(obj)}")
        self.obj, self.seen = obj, set()

    def fail(self, path: str, msg: str):
        raise ProfileError(f"{self.origin}: {path or '(top level)'}: {msg}")

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: str, default: Any = dataclasses.MISSING, *, lo=None, hi=None, choices=None):
        self.seen.add(key)
        path = self._at(key)
        if key not in self.obj:
            if default is dataclasses.MISSING:
                self.fail(path, f"required field is missing ({kind})")
            return default
        v = self.obj[key]
        if v is None and default is None:
            return None
        if kind == "int" and isinstance(v, float) and v.is_integer():
            v = int(v)  # JSON has one number type: 8.0 is the integer 8 (as in JSON Schema)
        ok = {
            "int": isinstance(v, int) and not isinstance(v, bool),
            "number": isinstance(v, (int, float)) and not isinstance(v, bool),
            "bool": isinstance(v, bool),
            "string": isinstance(v, str),
            "object": isinstance(v, dict),
            "array": isinstance(v, list),
        }[kind]
        if not ok:
            self.fail(path, f"must be {'an' if kind[0] in 'aeio' else 'a'} {kind}, got {_json_type(v)}")
        if kind == "number":
            try:
                v = float(v)
            except OverflowError:  # a huge JSON integer
                v = math.inf
            if not math.isfinite(v):
                self.fail(path, f"must be a finite number, got {self.obj[key]!r:.40}")
        if lo is not None and v < lo:
            self.fail(path, f"must be >= {lo}, got {str(v)[:40]}")
        if hi is not None and v > hi:
            self.fail(path, f"must be <= {hi}, got {str(v)[:40]}")
        if choices is not None and v not in choices:
            self.fail(path, f"must be one of {', '.join(map(repr, choices))}; got {v!r}")
        return v

    def sub(self, key: str) -> _Reader | None:
        obj = self.get(key, "object", None)
        return None if obj is None else _Reader(obj, self._at(key), self.origin)

    def done(self):
        unknown = sorted(set(self.obj) - self.seen, key=str)
        if unknown:
            allowed = ", ".join(sorted(self.seen))
            self.fail(self._at(str(unknown[0])), f"unknown field; allowed here: {allowed}")


def _json_type(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(v), "null" if v is None else type(v).__name__
    )


def _weights(r: _Reader) -> WeightSpec:
    bits = r.get("bits", "int", 8, lo=1, hi=16)
    w = WeightSpec(
        bits=bits,
        bits_per_cell=r.get("bits_per_cell", "int", 2, lo=1, hi=bits),
        quantize=r.get("quantize", "bool", True),
        scale=r.get("scale", "string", "per_layer", choices=SCALE_GRANULARITIES),
        quant_style=r.get("quant_style", "string", "round_clip", choices=QUANT_STYLES),
    )
    r.done()
    return w


def _state(r: _Reader) -> StateDependence:
    factor = r.get("factor", "number", lo=0.0, hi=1e3)
    band = r.get("band", "array", [0.25, 0.75])
    if len(band) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in band):
        r.fail(r._at("band"), "must be an array of two numbers [low, high]")
    if not 0 <= band[0] < band[1] <= 1:
        r.fail(r._at("band"), f"must satisfy 0 <= low < high <= 1, got {band}")
    s = StateDependence(
        factor=factor,
        band=(float(band[0]), float(band[1])),
        renormalize_fraction=r.get("renormalize_fraction", "number", None, lo=0.0, hi=1.0)
        if "renormalize_fraction" in r.obj
        else r.seen.add("renormalize_fraction") or 0.4,
    )
    r.done()
    return s


def _programming(r: _Reader) -> ProgrammingVariation:
    sigma = r.get("sigma", "number", lo=0.0, hi=10.0)
    unit = r.get("unit", "string", "cell_range", choices=SIGMA_UNITS)
    dist = r.get("distribution", "string", "gaussian", choices=("gaussian",))
    del dist  # only one distribution today; the field keeps the JSON explicit
    sd = r.sub("state_dependent")
    p = ProgrammingVariation(sigma=sigma, unit=unit, state_dependent=None if sd is None else _state(sd))
    r.done()
    return p


def _read_noise(r: _Reader) -> ReadNoise:
    n = ReadNoise(
        sigma=r.get("sigma", "number", lo=0.0, hi=10.0),
        unit=r.get("unit", "string", "cell_range", choices=SIGMA_UNITS),
    )
    r.done()
    return n


def _stuck_at(r: _Reader) -> StuckAt:
    s = StuckAt(
        zero_rate=r.get("zero_rate", "number", 0.0, lo=0.0, hi=1.0),
        full_rate=r.get("full_rate", "number", 0.0, lo=0.0, hi=1.0),
    )
    if s.zero_rate + s.full_rate > 1:
        r.fail(r._at("full_rate"), "zero_rate + full_rate must be <= 1")
    r.done()
    return s


def _io(r: _Reader) -> IOSpec:
    io = IOSpec(
        input_bits=r.get("input_bits", "int", None, lo=2, hi=16),
        output_bits=r.get("output_bits", "int", None, lo=2, hi=16),
    )
    r.done()
    return io


def _string_list(r: _Reader, key: str, default: list, choices=None) -> tuple[str, ...]:
    items = r.get(key, "array", default)
    for i, v in enumerate(items):
        if not isinstance(v, str):
            r.fail(f"{r._at(key)}[{i}]", f"must be a string, got {_json_type(v)}")
        if choices is not None and v not in choices:
            r.fail(f"{r._at(key)}[{i}]", f"must be one of {', '.join(map(repr, choices))}; got {v!r}")
    return tuple(items)


def _override(r: _Reader) -> LayerOverride:
    def opt(key, parse):
        sub = r.sub(key)
        return None if sub is None else parse(sub)

    o = LayerOverride(
        layers=r.get("layers", "string"),
        weights=opt("weights", _weights),
        programming=opt("programming", _programming),
        read_noise=opt("read_noise", _read_noise),
        stuck_at=opt("stuck_at", _stuck_at),
    )
    r.done()
    return o


def _mapping(r: _Reader) -> Mapping:
    op_types = _string_list(r, "op_types", list(MAPPABLE_OPS), MAPPABLE_OPS)
    digital = _string_list(r, "digital_layers", [])
    raw = r.get("overrides", "array", [])
    overrides = tuple(_override(_Reader(o, f"{r._at('overrides')}[{i}]", r.origin)) for i, o in enumerate(raw))
    m = Mapping(op_types=op_types, digital_layers=digital, overrides=overrides)
    r.done()
    return m


def _name(r: _Reader) -> str:
    name = r.get("name", "string")
    if not name.strip():
        r.fail("name", "must be a non-empty string")
    return name


def profile_from_dict(obj: Any, origin: str = "<profile>") -> DeviceProfile:
    """Validate a parsed JSON object into a ``DeviceProfile``; ``origin`` names the file in errors."""
    r = _Reader(obj, "", origin)
    version = r.get("schema_version", "int")
    if version != SCHEMA_VERSION:
        r.fail("schema_version", f"must be {SCHEMA_VERSION}, got {version}")

    def section(key, parse, default):
        sub = r.sub(key)
        return default if sub is None else parse(sub)

    p = DeviceProfile(
        name=_name(r),
        description=r.get("description", "string", ""),
        source=r.get("source", "string", ""),
        weights=section("weights", _weights, WeightSpec()),
        programming=section("programming", _programming, ProgrammingVariation()),
        read_noise=section("read_noise", _read_noise, ReadNoise()),
        stuck_at=section("stuck_at", _stuck_at, StuckAt()),
        io=section("io", _io, IOSpec()),
        mapping=section("mapping", _mapping, Mapping()),
    )
    r.done()
    return p


# ---------------------------------------------------------------- loading


def builtin_profile_dir():
    """The folder of built-in profiles (``device_profiles/`` in the repo, shipped in the wheel)."""
    return resources.files("nft_deploy.device_profiles")


def list_profiles() -> list[str]:
    """Names of the built-in profiles, sorted."""
    return sorted(
        p.name[: -len(".json")]
        for p in builtin_profile_dir().iterdir()
        if p.name.endswith(".json") and p.name != "schema.json"
    )


def load_profile(name_or_path: str | Path | DeviceProfile) -> DeviceProfile:
    """A built-in profile by name (``rram_4bit``) or a JSON file by path; a profile passes through."""
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    text_id = str(name_or_path)
    looks_like_path = text_id.endswith(".json") or "/" in text_id or "\\" in text_id or Path(text_id).is_file()
    if looks_like_path:
        path = Path(text_id)
        if not path.is_file():
            raise ProfileError(f"{path}: no such profile file")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ProfileError(f"{path}: cannot read the profile file ({e.strerror or e})") from None
        return _parse(data, str(path))
    if text_id not in list_profiles():
        raise ProfileError(
            f"{text_id}: unknown profile; built-in profiles: {', '.join(list_profiles())} (or give a path to a .json file)"
        )
    res = builtin_profile_dir() / f"{text_id}.json"
    return _parse(res.read_bytes(), f"{text_id}.json")


def _parse(data: bytes, origin: str) -> DeviceProfile:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, too many digits, nesting
        raise ProfileError(f"{origin}: not valid JSON ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return profile_from_dict(obj, origin)
