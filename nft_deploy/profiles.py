"""Device profiles: the JSON description of a CIM device that training, export and evaluation share.

A profile is plain, frozen data (the dataclasses live in ``nft_deploy.profile_types`` and are re-exported
here). ``load_profile`` reads JSON (a built-in name or a path), validates every field and raises
``ProfileError`` with the JSON path of the first bad field. ``to_dict`` gives the JSON back, so
``profile_from_dict(p.to_dict()) == p``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from nft_deploy.errors import ProfileError
from nft_deploy.profile_types import (
    MAPPABLE_OPS,
    QUANT_STYLES,
    SCALE_GRANULARITIES,
    SCHEMA_VERSION,
    SIGMA_UNITS,
    DeviceProfile,
    IOSpec,
    LayerOverride,
    Mapping,
    ProgrammingVariation,
    ReadNoise,
    StateDependence,
    StuckAt,
    WeightSpec,
)

__all__ = [
    "MAPPABLE_OPS", "QUANT_STYLES", "SCALE_GRANULARITIES", "SCHEMA_VERSION", "SIGMA_UNITS", "DeviceProfile",
    "IOSpec", "LayerOverride", "Mapping", "ProgrammingVariation", "ReadNoise", "StateDependence", "StuckAt",
    "WeightSpec", "builtin_profile_dir", "list_profiles", "load_profile", "profile_from_dict",
]

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
