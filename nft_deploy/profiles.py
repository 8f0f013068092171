"""Device profiles: the JSON description of a CIM device that training, export and evaluation share.

A profile is plain, frozen data (the dataclasses live in ``nft_deploy.profile_types`` and are re-exported
here). ``load_profile`` reads JSON (a built-in name or a path), validates every field and raises
``ProfileError`` with the JSON path of the first bad field. ``to_dict`` gives the JSON back, so
``profile_from_dict(p.to_dict()) == p``.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from nft_deploy.atomic import atomic_write_text
from nft_deploy.errors import ProfileError
from nft_deploy.profile_fields import FieldSpec, choices_of, field_specs, rules_for
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
    "WeightSpec", "builtin_profile_dir", "init_profiles", "list_profiles", "load_profile", "profile_from_dict",
]

# ---------------------------------------------------------------- validation
# One generic walk over the field specs of ``profile_fields``: types, defaults and limits all come from
# the dataclasses in ``profile_types``, so this code holds no rule of its own.


def _fail(origin: str, path: str, msg: str) -> NoReturn:
    raise ProfileError(f"{origin}: {path or '(top level)'}: {msg}")


def _json_type(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(v), "null" if v is None else type(v).__name__
    )


def _of_kind(spec: FieldSpec, v: Any, path: str, origin: str) -> Any:
    """``v`` as a value of ``spec.kind`` (JSON 8.0 is the int 8, as in JSON Schema), or a ProfileError."""
    if spec.kind == "int" and isinstance(v, float) and v.is_integer():
        v = int(v)
    ok = {
        "int": isinstance(v, int) and not isinstance(v, bool),
        "number": isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": isinstance(v, bool),
        "string": isinstance(v, str),
        "object": isinstance(v, dict),
        "array": isinstance(v, list),
    }[spec.kind]
    if not ok:
        _fail(origin, path, f"must be {'an' if spec.kind[0] in 'aeio' else 'a'} {spec.kind}, got {_json_type(v)}")
    if spec.kind == "number":
        try:
            v = float(v)
        except OverflowError:  # a huge JSON integer
            v = math.inf
        if not math.isfinite(v):
            _fail(origin, path, "must be a finite number, got " + f"{v!r:.40}")
    return v


def _check_limits(spec: FieldSpec, v: Any, path: str, origin: str) -> None:
    lim = spec.limits
    if "min" in lim and v < lim["min"]:
        _fail(origin, path, f"must be >= {lim['min']}, got {str(v)[:40]}")
    if "max" in lim and v > lim["max"]:
        _fail(origin, path, f"must be <= {lim['max']}, got {str(v)[:40]}")
    choices = choices_of(lim)
    if choices is not None and v not in choices:
        _fail(origin, path, f"must be one of {', '.join(map(repr, choices))}; got {v!r}")
    if "const" in lim and v != lim["const"]:
        _fail(origin, path, f"must be {lim['const']}, got {v}")
    if lim.get("nonblank") and not v.strip():
        _fail(origin, path, "must be a non-empty string")


_COUNTS = {1: "one", 2: "two", 3: "three"}


def _read_value(spec: FieldSpec, v: Any, path: str, origin: str) -> Any:
    """One JSON value checked against its spec, as the dataclass stores it."""
    if v is None and spec.nullable:
        return spec.null_value()
    v = _of_kind(spec, v, path, origin)
    if spec.kind == "object":
        return _read_section(spec.section, v, path, origin)
    if spec.kind == "array":
        if spec.length is not None and len(v) != spec.length:
            _fail(origin, path, f"must be an array of {_COUNTS.get(spec.length, spec.length)} {spec.item.kind}s, "
                                f"got {len(v)} items")
        return tuple(_read_value(spec.item, x, f"{path}[{i}]", origin) for i, x in enumerate(v))
    _check_limits(spec, v, path, origin)
    return v


def _read_section(cls: type, obj: Any, path: str, origin: str) -> Any:
    """A JSON object as dataclass ``cls``: each key, then unknown keys, then the rules between fields."""
    if not isinstance(obj, dict):
        _fail(origin, path, f"must be an object, got {_json_type(obj)}")
    specs = sorted(field_specs(cls), key=lambda s: "const" not in s.limits)  # a wrong version first
    values = {}
    for spec in specs:
        at = f"{path}.{spec.name}" if path else spec.name
        if spec.name in obj:
            value = _read_value(spec, obj[spec.name], at, origin)
        elif spec.required:
            _fail(origin, at, f"required field is missing ({spec.kind})")
        else:
            value = spec.default
        if not spec.json_only:
            values[spec.name] = value
    unknown = sorted(set(obj) - {s.name for s in specs}, key=str)
    if unknown:
        allowed = ", ".join(sorted(s.name for s in specs))
        _fail(origin, f"{path}.{unknown[0]}" if path else str(unknown[0]), f"unknown field; allowed here: {allowed}")
    section = cls(**values)
    for rule in rules_for(cls):
        msg = rule.check(section)
        if msg is not None:
            _fail(origin, f"{path}.{rule.field}" if path else rule.field, msg)
    return section


def profile_from_dict(obj: Any, origin: str = "<profile>") -> DeviceProfile:
    """Validate a parsed JSON object into a ``DeviceProfile``; ``origin`` names the file in errors."""
    return _read_section(DeviceProfile, obj, "", origin)


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


def load_profile(name_or_path: str | Path | DeviceProfile, sigma: float | None = None) -> DeviceProfile:
    """A built-in profile by name (``rram_4bit``) or a JSON file by path; a profile passes through. With
    ``sigma``: at that programming sigma (``DeviceProfile.with_sigma``, the one meaning of ``--sigma``)."""
    if sigma is not None:
        return load_profile(name_or_path).with_sigma(sigma)
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    text_id = str(name_or_path)
    looks_like_path = text_id.endswith(".json") or "/" in text_id or "\\" in text_id or Path(text_id).is_file()
    if looks_like_path:
        path = Path(text_id)
        if not path.is_file():
            raise ProfileError(f"{path}: no such profile file; {_builtins_hint()}")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ProfileError(f"{path}: cannot read the profile file ({e.strerror or e})") from None
        return _parse(data, str(path))
    if text_id not in list_profiles():
        raise ProfileError(f"{text_id}: unknown profile; {_builtins_hint(' (or give a path to a .json file)')}")
    res = builtin_profile_dir() / f"{text_id}.json"
    return _parse(res.read_bytes(), f"{text_id}.json")


COPY_HINT = "copy one with `nft-deploy profiles init DIR` or `nft-deploy profiles show NAME > my.json`"


def _builtins_hint(alternative: str = "") -> str:
    """What exists and how to get an editable copy: the next step after a name or path that does not load."""
    return f"built-in profiles: {', '.join(list_profiles())}{alternative}; {COPY_HINT}"


def init_profiles(directory: str | Path, *, force: bool = False) -> list[Path]:
    """Copy every built-in profile to ``directory/<name>.json``, plus ``schema.json``, as files to edit.

    Each copy starts with ``"$schema": "./schema.json"`` so editors complete and check it. Nothing is
    written when a target exists, unless ``force``. Returns the paths written.
    """
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise ProfileError(f"{out}: not a directory; give a folder for the profile copies")
    names = [*list_profiles(), "schema"]
    targets = [out / f"{n}.json" for n in names]
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not force:
        raise ProfileError(f"{existing[0]}: already exists; pass --force to overwrite (nothing was written)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, target in zip(names, targets, strict=True):
            text = (builtin_profile_dir() / f"{name}.json").read_text(encoding="utf-8")
            if name != "schema":
                text = text.replace("{", '{\n  "$schema": "./schema.json",', 1)
            atomic_write_text(target, text)
    except OSError as e:
        raise ProfileError(f"{e.filename or out}: cannot write the profile copies ({e.strerror or e})") from None
    return targets


def _parse(data: bytes, origin: str) -> DeviceProfile:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, too many digits, nesting
        raise ProfileError(f"{origin}: not valid JSON ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return profile_from_dict(obj, origin)
