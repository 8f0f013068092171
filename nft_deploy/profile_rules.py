"""What a profile's JSON must satisfy beyond each field's own limits: rules between the fields of one
section (``RULES``) and string keys the JSON may carry that the dataclasses drop (``JSON_ONLY``).

``profile_fields`` checks them on load and ``profile_schema`` writes them into schema.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nft_deploy.profile_types import (
    DeviceProfile,
    Drift,
    ProgrammingVariation,
    StateDependence,
    StuckAt,
    WeightSpec,
)


@dataclass(frozen=True)
class Rule:
    """A rule between fields of one section, checked once its fields are valid; reported at ``field``."""

    section: type
    field: str
    text: str
    """The rule in words, for schema.json (which cannot express it)."""
    check: Callable[[Any], str | None]
    """The error for a section that breaks the rule (what is allowed, what it got), or None."""


def _renormalizable(s: StateDependence) -> str | None:
    f = s.renormalize_fraction
    if f is None or f * s.factor**2 + 1 - f > 0:
        return None
    return (f"must keep f * factor^2 + 1 - f > 0 (sigma is divided by its square root), got {f:g} with factor "
            f"{s.factor:g}; lower renormalize_fraction, raise factor, or set it to null")


def _table(d: Drift) -> str | None:
    g = [p[0] for p in d.table]
    if d.law == "table" and len(g) < 2:
        return f"law 'table' needs at least two [g, mu_nu, sigma_nu] points, got {len(g)}"
    if any(b <= a for a, b in zip(g, g[1:], strict=False)):
        return f"the points' g must strictly increase, got {g}"
    return None


RULES = (
    Rule(WeightSpec, "bits_per_cell", "bits_per_cell <= bits",
         lambda w: None if w.bits_per_cell <= w.bits
         else f"must be <= {w.bits}, got {w.bits_per_cell}; a cell cannot hold more bits than the weight"),
    Rule(StateDependence, "band", "band low < high",
         lambda s: None if s.band[0] < s.band[1] else f"must satisfy 0 <= low < high <= 1, got {list(s.band)}"),
    Rule(StateDependence, "renormalize_fraction", "f * factor^2 + 1 - f > 0 with f = renormalize_fraction",
         _renormalizable),
    Rule(StuckAt, "full_rate", "zero_rate + full_rate <= 1",
         lambda s: None if s.zero_rate + s.full_rate <= 1
         else f"zero_rate + full_rate must be <= 1, got {s.zero_rate:g} + {s.full_rate:g}"),
    Rule(Drift, "table", "law 'table' needs >= 2 points; g strictly increasing", _table),
)


@dataclass(frozen=True)
class JsonOnly:
    """A string key the JSON may carry that the dataclass drops: checked on load, absent from ``to_dict``."""

    name: str
    doc: str
    default: str | None = None
    choices: tuple[str, ...] | None = None


JSON_ONLY = {
    DeviceProfile: (JsonOnly("$schema", "Where editors find schema.json (e.g. ./schema.json); ignored on load."),),
    ProgrammingVariation: (JsonOnly(
        "distribution", "Distribution of the programming error; only gaussian exists, the key keeps the JSON "
        "explicit.", "gaussian", ("gaussian",)),),
}
