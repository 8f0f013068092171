"""Monte Carlo over programmed chips in ONNX Runtime: the configuration, the clean pass, the runs look by
look (``sequential``) and their summary. How one chip runs (``fold`` or ``feed``) is in ``shards``; where
chips run is a backend, chosen by name from the ``backends`` registry: worker processes here
(``local_backend``), Ray tasks (``ray_backend``) or one registered with ``backends.register_backend``.

``auto`` folds models with mapped convolutions and feeds the rest (see
benchmarks/results/evaluate.md). Memory is flat in the number of chips: each chip reduces to a few
scalars plus shared fixed-point sums (``metrics.MeanProbSum``, ``metrics.BinSum``). Results do not
depend on the backend or the number of workers.
"""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from nft_deploy.data import batches
from nft_deploy.data.dataset import take
from nft_deploy.device_plan import sigma_factors
from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation import metrics as M
from nft_deploy.evaluation import sequential
from nft_deploy.evaluation.backends import Backend, backend
from nft_deploy.evaluation.config import (  # noqa: F401  - EvalConfig and friends are this module's API too
    ENGINES,
    STRATEGIES,
    TORCH_EVALUATE_ONLY,
    EvalConfig,
    make_config,
)
from nft_deploy.evaluation.deployed import DeployedModel, load_deployed
from nft_deploy.evaluation.inputs import (  # noqa: F401  - resolve_data and the checks: this module's API too
    EvalData,
    check_input,
    check_labels,
    check_logits,
    model_inputs,
    resolve_data,
)
from nft_deploy.evaluation.journal import Journal
from nft_deploy.evaluation.programming import InferenceGraph, Programmer
from nft_deploy.evaluation.progress import chip_progress
from nft_deploy.evaluation.results import ChipMetrics, CleanMetrics, EvaluationResult
from nft_deploy.evaluation.shards import READ_NOISE_KEY, Job, Shard
from nft_deploy.evaluation.timeaxis import check_times, time_axis
from nft_deploy.profiles import DeviceProfile


def choose_strategy(model: DeployedModel, requested: str) -> str:
    """``fold`` or ``feed`` for this model (``auto``: fold when convolutions are mapped, for speed)."""
    if requested != "auto":
        return requested
    return "fold" if model.prefers_fold and model.chip_inputs else "feed"


def resolve_sigma(model: DeployedModel, sigma: float | None) -> tuple[float, dict[str, float] | None]:
    """(sigma evaluated, per-layer factor on the chip normals) for ``--sigma``: the plan at ``sigma``
    (``DevicePlan.with_sigma``, the one meaning of --sigma) against the plan the model was exported with."""
    exported = model.plan.sigma
    if sigma is None:
        return exported, None
    if not model.chip_inputs or not any(lay.chip_input for lay in model.layers):
        raise EvaluationError(f"{model.name}: --sigma: the model has no chip inputs (nft.chip/*), so programming "
                              f"variation cannot be rescaled; re-export it with a profile whose programming.sigma > 0 "
                              f"(it was exported with {model.profile.name!r}, sigma {exported})")
    if exported == 0:
        raise EvaluationError(f"{model.name}: --sigma: the model was exported with programming sigma 0, so there "
                              "is no scale to rescale; re-export it with a profile whose programming.sigma > 0")
    return sigma, sigma_factors(model.plan, model.plan.with_sigma(sigma), model.name)


# ---------------------------------------------------------------- one process's chips


def backend_session(config: EvalConfig) -> AbstractContextManager[int]:
    """The backend ready for the block (e.g. Ray started or joined, stopped after if started here); yields the
    number of workers to shard chips over. Nested sessions reuse the outer one (one Ray for a sweep)."""
    return backend(config.backend).session(config)


def chip_logits(model: DeployedModel, x, chip: int, seed: int = 0, sigma: float | None = None,
                batch_size: int = 256, output: str | None = None, seconds: float | None = None) -> np.ndarray:
    """Logits (samples, classes) of one chip, exactly as the Monte Carlo computes them (parity checks); ``x``
    one array or a dict of named inputs, ``output`` the output read (None: the first), ``seconds`` the read
    time of a drifting model (None: t0)."""
    model = model.with_output(output)
    _, factors = resolve_sigma(model, sigma)
    x = model_inputs(model, x)
    programmed = Programmer(model.split, model.layers, model.weights).program(seed, chip, factors, seconds)
    read = np.random.SeedSequence(seed, spawn_key=(chip, READ_NOISE_KEY)) if model.has_read_noise else None
    session, feeds = InferenceGraph(model.split, model.weights).session(programmed, read, 1, fold=True)
    n = len(next(iter(x.values())))
    return np.concatenate([session.run([model.output_name], {**take(x, idx), **feeds})[0]
                           for idx in batches(n, batch_size)])


# ---------------------------------------------------------------- the run


def clean_pass(model: DeployedModel, x: dict[str, np.ndarray], y: np.ndarray, batch_size: int, threads: int,
               n_bins: int = M.N_BINS) -> tuple[CleanMetrics, np.ndarray, int]:
    """Noise-free metrics (chip/stuck inputs zero, read noise off): (metrics, predictions, classes); ``x``
    the model's inputs by name (``model_inputs``)."""
    programmed = Programmer(model.split, model.layers, model.weights).program(0, None)
    session, feeds = InferenceGraph(model.split, model.weights, clean=True).session(programmed, None, threads, fold=False)
    acc, preds, classes = M.ChipAccumulator(-1, n_bins), [], None
    for idx in batches(len(y), batch_size):
        try:
            logits = session.run([model.output_name], {**take(x, idx), **feeds})[0]
        except (ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                ort.capi.onnxruntime_pybind11_state.Fail) as e:  # data the model cannot take
            shapes = ", ".join(f"{k} {a.shape[1:]}" if len(x) > 1 else f"{a.shape[1:]}" for k, a in x.items())
            raise EvaluationError(f"{model.name}: ONNX Runtime rejected the data (samples of shape "
                                  f"{shapes}): {str(e).splitlines()[0][:300]}") from None
        check_logits(model, logits)
        if classes is None:
            classes = logits.shape[1]
            check_labels(model, y, classes)
        preds.append(acc.update(M.softmax(logits), y[idx]))
    c = acc.finish()
    return CleanMetrics(c.accuracy, c.confidence, c.entropy, c.ece), np.concatenate(preds), classes


def run_monte_carlo(model: DeployedModel, x: np.ndarray, y: np.ndarray, config: EvalConfig,
                    data_name: str = "<data>", timings: dict | None = None, rule=None) -> EvaluationResult:
    """Clean pass, then chips: all ``config.chips`` of them, or look by look until ``rule`` settles
    (``sequential.run_looks``; ``config.ci_width`` makes the interval-width rule). ``timings``, when given,
    receives ``clean_s`` and ``chips_s`` (wall seconds; kept out of the result so that its JSON stays
    reproducible)."""
    if rule is None and config.ci_width is not None:
        rule = sequential.ci_width_rule(config.ci_width)
    return run_on_same_chips([model], x, y, config, data_name, timings, rule)[0]


def run_on_same_chips(models: list[DeployedModel], x: np.ndarray, y: np.ndarray, config: EvalConfig,
                      data_name: str = "<data>", timings: dict | None = None, rule=None) -> list[EvaluationResult]:
    """Every model on the same chips, look by look: ``rule(chips, level, n)`` sees each model's chips so
    far (a list per model), so a paired rule can stop them together."""
    if config.engine == "torch":  # compare, check and sweep come here; evaluate dispatches before
        raise EvaluationError(TORCH_EVALUATE_ONLY)
    models = [m.with_output(config.output) for m in models]
    feeds = []
    for model in models:
        feeds.append(model_inputs(model, x, data_name))
        resolve_sigma(model, config.sigma)  # user errors surface before a Ray is started
        check_times(model.name, model.plan, config)
        choose_strategy(model, config.strategy)
    with backend_session(config) as workers:
        start = time.perf_counter()
        runs = [prepare_run(m, f, y, config, data_name, workers) for m, f in zip(models, feeds, strict=True)]
        clean_done = time.perf_counter()
        if getattr(rule, "needs_clean", False):
            rule = rule.bind(runs[0].clean)
        label = runs[0].label if len(runs) == 1 else f"{len(runs)} models ({data_name})"
        with chip_progress(config.chips * len(runs), label, config.quiet) as advance:
            outcome = sequential.run_looks(
                lambda ids: [r.step(ids, advance) for r in runs], lambda: [r.chips() for r in runs],
                config.chips, config.first_look, None if rule is None else _per_model(rule, len(runs)),
                config.alpha)
        if timings is not None:
            timings.update(clean_s=clean_done - start, chips_s=time.perf_counter() - clean_done)
        return [r.result(outcome) for r in runs]


def _per_model(rule, n_models: int):
    """A one-model rule (it reads one chip list) applied to a one-model run; paired rules read them all."""
    if getattr(rule, "paired", False):
        return rule
    if n_models != 1:
        raise ValueError("a one-model stopping rule given several models")
    return lambda chips, level, n: rule(chips[0], level, n)


@dataclass
class PreparedRun:
    """One model's Monte Carlo after its clean pass: chips are added look by look (``step``)."""

    model: DeployedModel
    config: EvalConfig
    data_name: str
    job: Job
    backend: Backend
    workers: int
    clean: CleanMetrics
    sigma: float
    shards: list[Shard] = field(default_factory=list)
    journal: Journal | None = None
    """Finished shards on disk (``--resume``)."""

    @property
    def label(self) -> str:
        return f"{self.model.name} ({self.data_name})"

    def step(self, chips: list[int], advance) -> None:
        """Runs these chips (those a ``--resume`` folder does not already hold) and keeps their shards."""
        on_shard = _keep_nothing
        if self.journal is not None:
            done, chips = self.journal.take(chips)
            self.shards += done
            advance(sum(len(s.chips) for s in done))
            on_shard = self.journal.save
        if not chips:
            return
        self.shards += self.backend.run(self.job, chips, self.workers, advance, on_shard)

    def chips(self) -> list[ChipMetrics]:
        """Every chip run so far, in chip order."""
        return sorted((c for s in self.shards for c in s.chips), key=lambda c: c.chip)

    def result(self, outcome: sequential.Outcome) -> EvaluationResult:
        return summarize(self.model.name, self.model.profile, self.data_name, self.config, self.sigma,
                         self.job.strategy, self.clean, self.shards, self.job.num_classes, outcome)


def _keep_nothing(shard: Shard) -> None:
    """``on_shard`` of a run without ``--resume``."""


def prepare_run(model: DeployedModel, x: dict[str, np.ndarray], y: np.ndarray, config: EvalConfig, data_name: str,
                workers: int) -> PreparedRun:
    """The clean pass and the job every look ships to the workers; ``x`` the model's inputs by name."""
    sigma, factors = resolve_sigma(model, config.sigma)
    strategy = choose_strategy(model, config.strategy)
    clean, clean_pred, classes = clean_pass(model, x, y, config.batch_size, config.threads or os.cpu_count() or 1,
                                            config.n_bins)
    runs_on = backend(config.backend)  # local: fewer workers (saying so) where they would not fit in memory
    workers = runs_on.plan_workers(
        workers, model_bytes=len(model.split.inference) + sum(w.nbytes for w in model.weights.values()),
        data_bytes=sum(a.nbytes for a in x.values()), strategy=strategy, workers_given=config.workers is not None,
        batch_size=min(config.batch_size, len(y)), sample_bytes=model.activation_bytes)
    threads = config.threads or max(1, (os.cpu_count() or 1) // workers)
    job = Job(split=model.split, layers=model.layers,
              weights=model.weights, output_name=model.output_name, x=x, y=y, clean_pred=clean_pred,
              num_classes=classes, seed=config.seed, sigma_factors=factors, strategy=strategy,
              batch_size=config.batch_size, threads=threads, n_bins=config.n_bins, read_noise=model.has_read_noise,
              times=config.seconds)
    journal = Journal(config.resume, job) if config.resume is not None else None
    return PreparedRun(model, config, data_name, job, runs_on, workers, clean, sigma, journal=journal)


def summarize(name: str, profile: DeviceProfile, data_name: str, config: EvalConfig, sigma: float, strategy: str,
              clean: CleanMetrics, shards: list[Shard], classes: int,
              outcome: sequential.Outcome | None = None) -> EvaluationResult:
    """The result of a run from its reduced sums; both engines (this runner and ``torch_engine``) end here,
    so their JSON can only differ where their numbers do."""
    probs, bins = shards[0].probs, shards[0].bins
    for s in shards[1:]:
        probs.merge(s.probs)
        bins.merge(s.bins)
    chips = sorted((c for s in shards for c in s.chips), key=lambda c: c.chip)
    acc = M.accuracy_stats([c.accuracy for c in chips])
    expected_entropy = float(np.mean([c.entropy for c in chips]))
    ekl, predictive = M.ekl_from_sums(probs.mean(), expected_entropy)
    confidence = float(np.mean([c.confidence for c in chips]))
    return EvaluationResult(
        model=name, data=data_name, samples=int(probs.total.shape[0]), num_classes=classes,
        chips=len(chips), seed=config.seed, profile=profile.name, sigma=sigma,
        sigma_unit=profile.programming.unit, strategy=strategy, clean=clean, accuracy=acc,
        accuracy_drop=clean.accuracy - acc.mean, confidence=confidence, confidence_drop=clean.confidence - confidence,
        ekl=ekl, predictive_entropy=predictive, expected_entropy=expected_entropy,
        flip_rate=float(np.mean([c.flip_rate for c in chips])), ece=float(np.mean([c.ece for c in chips])),
        reliability=bins.reliability(), per_chip=chips,
        chips_max=outcome.chips_max if outcome else len(chips),
        stop_reason=outcome.stop_reason if outcome else f"fixed: {len(chips)} chips",
        time=config.time[-1] if config.time else None, times=time_axis(config, clean, chips))


# ---------------------------------------------------------------- the library entry point


def evaluate(model, data, config: EvalConfig | None = None, *, profile=None, **overrides) -> EvaluationResult:
    """Monte Carlo evaluation of ``model`` (deployed .onnx; float .onnx or checkpoint with ``profile``) on
    the test split of ``data``; keyword overrides set ``EvalConfig`` fields (``chips=200, seed=0``...).
    ``engine="torch"`` runs a checkpoint in torch instead (``torch_engine.evaluate_torch``)."""
    config = make_config(config, overrides)
    if config.engine == "torch":
        from nft_deploy.evaluation.torch_engine import evaluate_torch

        if config.ci_width is not None:
            raise EvaluationError("--ci-width: the sequential Monte Carlo runs on --engine onnxruntime; "
                                  "--engine torch runs every --chips chip")
        return evaluate_torch(model, data, config, profile=profile)
    deployed = load_deployed(model, profile)
    d = resolve_data(data, config, deployed)
    return with_preprocessing(run_monte_carlo(deployed, d.x, d.y, config, data_name=d.name), d)


def with_preprocessing(result: EvaluationResult, data: EvalData) -> EvaluationResult:
    """``result`` recording how ``data`` was made (``EvaluationResult.preprocessing``)."""
    return dataclasses.replace(result, preprocessing=data.preprocessing)
