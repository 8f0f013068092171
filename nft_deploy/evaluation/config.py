"""``EvalConfig``: how to run a Monte Carlo, every field a flag of the same name, validated once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from nft_deploy.data.images import ImageOptions
from nft_deploy.data.options import image_size_option, normalize_option
from nft_deploy.drift import parse_time
from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation import metrics as M
from nft_deploy.evaluation.backends import backend, backend_names
from nft_deploy.options import option
from nft_deploy.profile_types import SIGMA_HELP

STRATEGIES = ("auto", "fold", "feed")
ENGINES = ("onnxruntime", "torch")
TORCH_EVALUATE_ONLY = ("--engine torch: only evaluate (without --sweep) runs on torch for now; compare, check and "
                       "sweep need --engine onnxruntime")


@dataclass(frozen=True)
class EvalConfig:
    """How to run the Monte Carlo; every field is a CLI flag of the same name (``option()``: its default and help,
    declared once; evaluate, compare, check and sweep generate their flags from these fields)."""

    chips: int = option(200, "Monte Carlo chips (>= 1).")
    """Number of programmed chips (>= 1)."""
    seed: int = option(0, "Run seed (chip draws).")
    """Run seed; chip i draws from SeedSequence(seed, spawn_key=(i, crc32(layer)))."""
    sigma: float | None = option(None, SIGMA_HELP + " Default: the exported sigma.")
    """Programming sigma to evaluate (profile unit); None: the one the model was exported with."""
    batch_size: int = option(256)
    workers: int | None = option(None, "Worker processes (chip shards), 1 thread each by default [one per core].")
    """Worker processes (chip shards); None: one per core (at most one per chip) where processes can fork,
    else 1. N processes x 1 thread beat 1 process x N threads (benchmarks/results/evaluate.md)."""
    threads: int | None = option(None, "ONNX Runtime threads per worker [cores / workers].")
    """Intra-op threads per session; None: cores // workers."""
    strategy: str = option("auto", "fold: each chip's programmed weights folded into its session (fastest for "
                           "convolutions, about twice the memory); feed: programmed weights fed as inputs, read in "
                           "place; auto: fold when convolutions are mapped.", metavar="auto|fold|feed")
    """fold | feed | auto (see the module docstring)."""
    limit: int | None = option(None, "Use only the first N test samples.")
    """Evaluate only the first ``limit`` samples."""
    quiet: bool = option(False, "No progress bar.")
    """No progress bar."""
    n_bins: int = option(M.N_BINS, flag=False)
    """Confidence bins of ECE and the reliability diagram."""
    backend: str = option("local", "local: worker processes here; ray: Ray tasks (pip install 'nft-deploy[ray]'), "
                          "same results for the same seed; NAME: a backend registered with "
                          "nft_deploy.evaluation.backends.register_backend.", metavar="local|ray|NAME")
    """Where chips run, a name in the ``backends`` registry: local (worker processes on this machine) | ray (Ray
    tasks; same results, see ``ray_backend``) | one registered with ``backends.register_backend``."""
    address: str | None = option(None, "Ray cluster to join with --backend ray (HOST:PORT, ray://HOST:PORT or auto) "
                                 "[start a local Ray with --workers CPUs].")
    """Ray cluster to join (HOST:PORT, ray://HOST:PORT or auto); None: start a local Ray with ``workers``
    CPUs for the run and shut it down after (a Ray this process already joined is reused)."""
    ci_width: float | None = option(None, "Sequential Monte Carlo: stop adding chips once the interval of the mean "
                                    "accuracy (compare: of every paired difference against the first model) is "
                                    "narrower than this (accuracy units, e.g. 0.01) at --alpha; --chips is the "
                                    "maximum.")
    """Sequential Monte Carlo: stop adding chips once the interval of the mean accuracy (compare: of each
    paired difference) is narrower than this (accuracy units); ``chips`` stays the maximum. None: all chips."""
    alpha: float = option(0.05, "Error rate of a sequential decision (--ci-width, check), spent over a fixed "
                          "schedule of looks (Bonferroni for means, exact group-sequential spending for "
                          "percentiles).")
    """Error rate of a sequential decision (``--ci-width``, ``check``), spent over the looks (Bonferroni for means, exact group-sequential spending for percentiles)."""
    first_look: int = option(16, "Chips at the first look of a sequential run; each later look doubles them, "
                             "--chips is the last.")
    """Chips at the first look of a sequential run; every later look doubles the count (fixed schedule)."""
    resume: str | None = option(None, "Keep every finished chip shard in this folder; rerun with the same folder "
                                "to continue an interrupted run from the chips already done (same bytes as an "
                                "uninterrupted run).", metavar="DIRECTORY")
    """Folder that keeps every finished chip shard (``journal``): a rerun with the same folder continues an
    interrupted run from the chips already done and writes the same bytes. None: nothing kept."""
    engine: str = option("onnxruntime", "onnxruntime: the deployed graph; torch: a checkpoint in the training-time "
                         "torch simulation on the same chips, same JSON (strategy 'torch'), to cross-check the "
                         "export against it; no read noise; evaluate only (not --sweep, compare, check or sweep).",
                         metavar="onnxruntime|torch")
    """onnxruntime (the deployed graph, this module) | torch (a checkpoint in the training-time simulation on
    the same chips, ``torch_engine``: a cross-check of the export; evaluate only, no read noise, in this
    process: workers, threads, strategy and backend do not apply)."""
    ranges_from: str | None = option(None, "--engine torch: run the converters at the calibrated DAC/ADC ranges "
                                     "of this deployed model (an export --calibrate of the same checkpoint), so "
                                     "the two engines can be compared chip by chip [full scale per sample].",
                                     metavar="DEPLOYED.onnx")
    """``engine="torch"``: a deployed model (path or ``DeployedModel``) whose calibrated converter ranges the
    torch plan takes by layer name (``DevicePlan.with_ranges``); None: full-scale converters, as training's."""
    output: str | None = option(None, "Graph output to read as the logits, (N, C) [the first output].",
                                decls=("--output", "output_name"), metavar="NAME")
    """Name of the graph output read as logits, which must be (N, C); None: the first output."""
    image_size: tuple[int, ...] | None = image_size_option()
    """Image folders given as data: (H, W) (or (N,) for N x N) every image is resized to; None: their own size.
    The channels come from the model's input (1: grayscale, 3: RGB)."""
    normalize: str | tuple | None = normalize_option()
    """Image folders given as data: ``MEAN,STD`` (per channel ``M1,M2,M3;S1,S2,S3``) or (means, stds), applied
    to pixel / 255; None: values stay in [0, 1]."""
    time: tuple[str, ...] | None = option(
        None, "Read every chip at these times after programming, e.g. 1s,1h,1d,1y (units s, m, h, d, y; "
        "increasing): each chip is programmed once and read at every time (a profile with a drift section; no "
        "re-export). Top-level numbers, check's gate and compare's deltas are at the last time; the JSON's "
        "'times' holds every one (a sweep: every cell's, a column and a plot line per time) [a drifting model is "
        "read at its t0].", metavar="T1,T2,...")
    """Read times since programming (``drift.parse_time``: a number of seconds or ``<number><unit>``), strictly
    increasing; the result's top-level numbers are at the last. None: one read at the profile's t0."""

    @property
    def seconds(self) -> tuple[float, ...]:
        """``time`` in seconds (float32 values, as the graph reads them); () without ``time``."""
        return tuple(parse_time(t) for t in self.time or ())

    def __post_init__(self):
        if isinstance(self.time, (str, int, float)):
            object.__setattr__(self, "time", tuple(v for v in str(self.time).split(",") if v.strip()))
        seconds = self.seconds
        if self.time is not None and (not seconds or any(b <= a for a, b in zip(seconds, seconds[1:], strict=False))):
            raise EvaluationError(f"--time: {','.join(map(str, self.time))}: give one or more times in increasing "
                                  "order, e.g. 1s,1h,1d,1y")
        for flag, v, lo in (("--chips", self.chips, 1), ("--batch-size", self.batch_size, 1),
                            ("--workers", self.workers, 1), ("--threads", self.threads, 1),
                            ("--limit", self.limit, 1), ("n_bins", self.n_bins, 1), ("--seed", self.seed, 0),
                            ("--first-look", self.first_look, 1)):
            if v is not None and (not isinstance(v, (int, np.integer)) or v < lo):
                raise EvaluationError(f"{flag}: must be an integer >= {lo}, got {v!r}")
        if self.ci_width is not None and not 0 < self.ci_width <= 1:
            raise EvaluationError(f"--ci-width: must be in (0, 1] (accuracy units), got {self.ci_width}")
        if not 0 < self.alpha < 1:
            raise EvaluationError(f"--alpha: must be in (0, 1), got {self.alpha}")
        if self.sigma is not None and not self.sigma >= 0:
            raise EvaluationError(f"--sigma: must be >= 0, got {self.sigma}")
        ImageOptions.from_arguments(self.image_size, self.normalize)  # DataError naming the flag
        if self.strategy not in STRATEGIES:
            raise EvaluationError(f"--strategy: must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}")
        if self.engine not in ENGINES:
            raise EvaluationError(f"--engine: must be one of {', '.join(ENGINES)}; got {self.engine!r}")
        if self.backend not in backend_names():
            raise EvaluationError(f"--backend: must be one of {', '.join(backend_names())}; got {self.backend!r}")
        if self.ranges_from is not None and self.engine != "torch":
            raise EvaluationError("--ranges-from: applies to --engine torch (a deployed graph carries its own ranges)")
        if self.resume is not None and self.engine == "torch":
            raise EvaluationError("--resume: applies to --engine onnxruntime (a torch run keeps no shards)")
        if self.address is not None and not backend(self.backend).uses_address:
            takers = " or ".join(f"--backend {n}" for n in backend_names() if backend(n).uses_address)
            raise EvaluationError(f"--address {self.address}: only used with {takers}")


def make_config(config: EvalConfig | None, overrides: dict) -> EvalConfig:
    """``config`` with keyword overrides applied (each a field of ``EvalConfig``)."""
    base = config or EvalConfig()
    known = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown evaluation option {unknown[0]!r}; options: {', '.join(sorted(known))}")
    return dataclasses.replace(base, **overrides)


__all__ = ["ENGINES", "STRATEGIES", "TORCH_EVALUATE_ONLY", "EvalConfig", "make_config"]
