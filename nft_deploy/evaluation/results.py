"""Plain result objects of a Monte Carlo run; each serialises to stable, documented JSON.

JSON keys (schema ``nft-deploy/evaluation`` version 1) are the dataclass field names below; floats are
rounded to 10 decimals so that the same seed gives byte-identical files. Accuracies, confidences and
rates are fractions in [0, 1]; entropies and EKL are in nats. Nothing time- or host-dependent is stored.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nft_deploy.atomic import atomic_write_text

SCHEMA = "nft-deploy/evaluation"
SCHEMA_VERSION = 1
OMIT_EMPTY = {"omit_empty": True}
"""Field metadata: the key is left out of the JSON while the value is empty or None (a run without --time
writes the bytes it always wrote)."""


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval."""

    low: float
    high: float


@dataclass(frozen=True)
class AccuracyStats:
    """Summary of per-chip accuracies over the Monte Carlo chips."""

    mean: float
    std: float
    """Sample std over chips (ddof=1; 0 for one chip)."""
    ci95: Interval
    """95% Student-t interval of the mean accuracy."""
    ci99: Interval
    """99% Student-t interval of the mean accuracy."""
    min: float
    max: float
    p1: float
    """1st percentile of per-chip accuracy (linear interpolation): the worst chip in a hundred."""
    p5: float
    p50: float


@dataclass(frozen=True)
class DiffStats:
    """Paired difference of per-chip values (model minus baseline, chip by chip)."""

    mean: float
    std: float
    ci95: Interval
    ci99: Interval


@dataclass(frozen=True)
class ChipMetrics:
    """One programmed chip over the whole evaluation set."""

    chip: int
    """Chip index; its draws come from ``SeedSequence(seed, spawn_key=(chip, crc32(layer)))``."""
    accuracy: float
    confidence: float
    """Mean max-softmax probability."""
    entropy: float
    """Mean predictive entropy of this chip's softmax (nats)."""
    flip_rate: float
    """Fraction of samples whose predicted class differs from the clean model's."""
    ece: float
    """Expected calibration error (equal-width confidence bins)."""
    accuracy_at: list[float] = field(default_factory=list, metadata=OMIT_EMPTY)
    """Accuracy at each ``--time``, in order (the same chip read at every time: paired); absent without it.
    The other fields are at the last time."""


@dataclass(frozen=True)
class TimePoint:
    """Every chip read at one time after programming (``--time``)."""

    seconds: float
    label: str
    """The time as given, e.g. ``1y``."""
    accuracy: AccuracyStats
    accuracy_drop: float
    """clean.accuracy - accuracy.mean (the clean model is read at t0)."""


@dataclass(frozen=True)
class CleanMetrics:
    """The noise-free model: the same deployed graph with chip/stuck inputs zero and read noise off
    (weight quantization and DAC/ADC, if the profile has them, stay in)."""

    accuracy: float
    confidence: float
    entropy: float
    ece: float


@dataclass(frozen=True)
class Reliability:
    """Reliability diagram pooled over all chips and samples: per confidence bin."""

    edges: list[float]
    count: list[int]
    confidence: list[float]
    """Mean confidence in the bin (0 where empty)."""
    accuracy: list[float]
    """Accuracy in the bin (0 where empty)."""


@dataclass(frozen=True)
class EvaluationResult:
    """A Monte Carlo evaluation of one model on one data set."""

    model: str
    data: str
    samples: int
    num_classes: int
    chips: int
    seed: int
    profile: str
    sigma: float
    """Programming sigma evaluated (profile unit): the exported one or ``--sigma``."""
    sigma_unit: str
    strategy: str
    """How chips ran: in ONNX Runtime ``fold`` (a session per chip, draws folded into constant weights) or
    ``feed`` (one session, draws fed as inputs); ``torch`` for ``--engine torch`` (the checkpoint in the torch
    simulation, same chips, no read noise): the one field that tells the two engines' files apart."""
    clean: CleanMetrics
    accuracy: AccuracyStats
    accuracy_drop: float
    """clean.accuracy - accuracy.mean."""
    confidence: float
    """Mean max-softmax probability over chips and samples."""
    confidence_drop: float
    """clean.confidence - confidence."""
    ekl: float
    """Epistemic uncertainty E_x E_chip KL(p_chip || p_mean) (nats): the mutual information."""
    predictive_entropy: float
    """E_x H(p_mean): entropy of the chip-averaged prediction (nats)."""
    expected_entropy: float
    """E_x E_chip H(p_chip) (nats); predictive_entropy = expected_entropy + ekl."""
    flip_rate: float
    """Mean over chips of the fraction of predictions that differ from the clean model's."""
    ece: float
    """Mean over chips of the per-chip ECE."""
    reliability: Reliability
    per_chip: list[ChipMetrics] = field(default_factory=list)
    chips_max: int = 0
    """``--chips``: the most chips the run could use (``chips`` is how many it used)."""
    stop_reason: str = ""
    """Why the run stopped adding chips: ``fixed: N chips``, or a sequential rule's ``settled: ...`` or
    ``not settled ...`` (``nft_deploy.evaluation.sequential``)."""
    time: str | None = field(default=None, metadata=OMIT_EMPTY)
    """The ``--time`` the top-level numbers are read at (the last one given); absent without ``--time``."""
    times: list[TimePoint] = field(default_factory=list, metadata=OMIT_EMPTY)
    """Accuracy over the chips at every ``--time`` (the time axis; paired: the same chips at every time)."""
    preprocessing: dict[str, Any] = field(default_factory=dict)
    """How the data's arrays were made (``nft_deploy.data.Dataset.preprocessing``: format, source, split,
    scale; an image folder's size, channels, normalization and class names), plus ``limit`` when given."""

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "version": SCHEMA_VERSION, **_stop_keys(self), **_jsonable(self)}


@dataclass(frozen=True)
class ModelDelta:
    """One model against the baseline (the first model) on the same chips."""

    model: str
    baseline: str
    accuracy: DiffStats
    """Paired over chips: accuracy(model, chip) - accuracy(baseline, chip)."""
    confidence: float
    ekl: float
    flip_rate: float


@dataclass(frozen=True)
class CompareResult:
    """Several models on the same chips (same seeds) and data."""

    results: list[EvaluationResult]
    deltas: list[ModelDelta]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA + "/compare", "version": SCHEMA_VERSION, **_stop_keys(self.results[0]),
                **_jsonable(self)}


@dataclass(frozen=True)
class SweepResult:
    """A grid of models x programming sigmas; ``results[i][j]`` is model i at ``sigmas[j]``."""

    models: list[str]
    sigmas: list[float]
    results: list[list[EvaluationResult]]
    times: list[str] = field(default_factory=list, metadata=OMIT_EMPTY)
    """``--time``, as given: every cell holds its time axis (``EvaluationResult.times``, the same chips at every
    sigma and time); absent without it."""

    def to_dict(self) -> dict[str, Any]:
        body = _jsonable(self)
        results = body.pop("results")  # the grid's axes first, the cells (long) last
        return {"schema": SCHEMA + "/sweep", "version": SCHEMA_VERSION, **body, "results": results}


def _stop_keys(result: EvaluationResult) -> dict[str, Any]:
    """``chips_used``, ``chips_max`` and ``stop_reason`` at the top of a file, where a reader looks first."""
    return {"chips_used": result.chips, "chips_max": result.chips_max, "stop_reason": result.stop_reason}


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_empty") and getattr(obj, f.name) in (None, [], ()))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return round(obj, 10) + 0.0  # + 0.0 turns -0.0 into 0.0
    return obj


def to_json(result) -> str:
    """Stable JSON text (sorted structure is the dataclass order; 2-space indent, trailing newline)."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"


def write_json(result, path: str | Path) -> Path:
    """Write ``to_json(result)`` atomically."""
    return atomic_write_text(path, to_json(result))
