"""Chip shards in worker processes on this machine (``--backend local``), sized to the memory there is.

Before workers start, the memory one worker needs is estimated (``worker_bytes``: the model's weights by
strategy, the data, the runtime, and a batch's activations, from ONNX shape inference in ``activations``)
and compared with what the machine has available: the worker count is reduced (and the run says so), or
the run stops with one line naming ``--workers``, ``--strategy`` and, where a batch's activations are most
of a worker, ``--batch-size``, instead of the system killing workers. A worker killed anyway is reported
in one line naming its chips and how to rerun."""

from __future__ import annotations

import multiprocessing
import os
import signal
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

from nft_deploy.errors import EvaluationError, Note
from nft_deploy.evaluation.backends import Backend, backend, register_backend
from nft_deploy.evaluation.shards import Job, Shard, chunks, run_shard

BYTES_PER_WEIGHT_BYTE = {"feed": 3.5, "fold": 6.5}
"""Peak memory of one worker of its own, per byte of the model's weights, by strategy: the largest ratio
``benchmarks/memory.py`` measured on a 53 M-parameter MLP (feed 1.6-3.1x: programmed weights fed in place,
read noise drawn per inference; fold 3.6-5.9x: ONNX Runtime copies and pre-packs them), rounded up."""
RUNTIME_BYTES = 64 * 2**20
"""What a worker needs whatever the model (ONNX Runtime's arenas and session; 17-21 MB measured on LeNet-5)."""
ACTIVATION_FACTOR = 2.5
"""A worker's memory per byte of one sample's peak of live activations (``activations.activation_bytes``)
per sample of batch: what ONNX Runtime adds to that peak (arena rounding, layout copies, scratch buffers).
The largest ratio ``benchmarks/activation_memory.py`` measured, rounded up: the growth of a worker's peak
per sample of batch over that peak was 1.7x (LeNet-5), 2.4x (VGG-8), 2.2x (ResNet-18 at 224x224) with two
batches or more per chip, 1.5x on ResNet-50 (``resnet50_scale.py``, 32 against 256)."""


def _init_worker(name: str, job: Job) -> None:
    """Pool initializer, in each worker process: the job (inherited through fork, not pickled) goes to this
    process's copy of the backend registered as ``name``, where every task finds it."""
    # Ctrl-C reaches the whole process group: the parent stops the workers and says so in one line, so a
    # worker ignores SIGINT, and dies quietly on SIGTERM (no inherited handler, no traceback of its own).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    backend(name).worker_job = job


def _worker_shard(name: str, chips: list[int]) -> Shard:
    """One task in a worker process: these chips of the job its initializer held (only the chips travel)."""
    return run_shard(backend(name).worker_job, chips)


def resolve_workers(workers: int | None, chips: int) -> int:
    """``workers`` as given, or (None) one per core, at most one per chip, 1 where fork is unavailable."""
    if workers is not None:
        return workers
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(os.cpu_count() or 1, chips))


def available_bytes() -> int | None:
    """Memory the system can give without swapping (``MemAvailable``), or None where it is not known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def activation_batch_bytes(batch_size: int, sample_bytes: int | None) -> int:
    """Memory a batch's activations take in a worker: ``ACTIVATION_FACTOR`` x ``batch_size`` x one sample's
    peak (``activations.activation_bytes``); 0 when that is unknown (dynamic shapes: left out, as before)."""
    return int(ACTIVATION_FACTOR * batch_size * sample_bytes) if sample_bytes else 0


def worker_bytes(model_bytes: int, data_bytes: int, strategy: str, activations: int = 0) -> int:
    """Estimated peak memory of one worker (what it does not share with its parent): weights by strategy,
    the data, the runtime, and ``activations`` (``activation_batch_bytes``)."""
    return int(model_bytes * BYTES_PER_WEIGHT_BYTE[strategy]) + data_bytes + RUNTIME_BYTES + activations


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers the memory allows, and what to tell the user about it."""

    workers: int
    note: str | None = None


@dataclass(frozen=True)
class BatchShare:
    """A batch's part of ``per_worker`` (``activation_batch_bytes``): where it is most of it, the messages of
    ``fit_workers`` name the ``--batch-size`` that would fit."""

    size: int
    bytes: int

    def fitting(self, budget: int) -> int:
        """The largest batch size whose activations fit in ``budget`` bytes (0 if none; at most ``size`` - 1)."""
        return 0 if budget <= 0 or self.bytes <= 0 else min(self.size - 1, budget * self.size // self.bytes)


def fit_workers(workers: int, per_worker: int, available: int | None, strategy: str, workers_given: bool,
                batch: BatchShare | None = None) -> WorkerPlan:
    """``workers`` if they fit in ``available`` bytes, else fewer (saying so), else one line to fix it;
    both name a smaller ``--batch-size`` when ``batch`` is at least half of ``per_worker``."""
    if available is None or workers * per_worker <= available:
        return WorkerPlan(workers)
    fit = available // per_worker
    gib = 2**30
    dominant = batch is not None and 2 * batch.bytes >= per_worker
    rest = per_worker - batch.bytes if dominant else per_worker
    if fit < 1:
        other = "feed" if strategy == "fold" else None
        hint = f", --strategy {other} (less memory per worker)" if other else ""
        smaller = batch.fitting(available - rest) if dominant else 0
        hint += f", a smaller --batch-size {smaller} (a batch of {batch.size} is most of it)" if smaller else ""
        raise EvaluationError(f"--workers: one worker needs about {per_worker / gib:.1f} GiB ({strategy} strategy) "
                              f"and {available / gib:.1f} GiB is available; free memory{hint}, or evaluate fewer "
                              f"samples with --limit")
    verb = "asked for" if workers_given else "would use"
    smaller = batch.fitting(available // workers - rest) if dominant else 0
    keep = f" (--batch-size {smaller} would fit all {workers})" if smaller else ""
    return WorkerPlan(int(fit), f"--workers: {verb} {workers}, but each needs about {per_worker / gib:.1f} GiB and "
                                f"{available / gib:.1f} GiB is available; running {int(fit)}{keep}")


@register_backend("local")
class LocalBackend(Backend):
    """Worker processes on this machine (``--backend local``): forked once per run, each holding the job."""

    def __init__(self):
        self.worker_job: Job | None = None
        """The job of this process when it is a worker (set by the pool initializer); None in the parent."""

    @contextmanager
    def session(self, config) -> Iterator[int]:
        yield resolve_workers(config.workers, config.chips)

    def plan_workers(self, workers: int, *, model_bytes: int, data_bytes: int, strategy: str,
                     workers_given: bool, batch_size: int = 0, sample_bytes: int | None = None) -> int:
        """Fewer workers (saying so), or one line, rather than workers the system kills."""
        batch = BatchShare(batch_size, activation_batch_bytes(batch_size, sample_bytes))
        fit = fit_workers(workers, worker_bytes(model_bytes, data_bytes, strategy, batch.bytes), available_bytes(),
                          strategy, workers_given, batch)
        if fit.note:
            warnings.warn(fit.note, Note, stacklevel=3)
        return fit.workers

    def run(self, job: Job, chips: list[int], workers: int, advance, on_shard) -> list[Shard]:
        """Runs ``chips`` in ``workers`` processes (in this one for a single worker), several shards per
        worker; ``on_shard`` sees each shard as it is finished. Shards come back in any order."""
        if workers == 1 or len(chips) == 1:
            shards = []
            for chunk in chunks(chips, 1):
                shards.append(run_shard(job, chunk, advance))
                on_shard(shards[-1])
            return shards
        # fork: workers inherit the job without re-importing the caller's __main__ (spawn would need a
        # `if __name__ == "__main__"` guard in every user script); no ORT session is alive at this point.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        shards = []
        with ProcessPoolExecutor(min(workers, len(chips)), mp_context=ctx, initializer=_init_worker,
                                 initargs=(self.name, job)) as ex:
            try:
                futures = {ex.submit(_worker_shard, self.name, c): c for c in chunks(chips, workers)}
                for f in as_completed(futures):
                    shards.append(f.result())
                    on_shard(shards[-1])
                    advance(len(futures[f]))
            except BaseException as e:
                if not isinstance(e, BrokenProcessPool):  # Ctrl-C or SIGTERM: stop the workers now, not after
                    for process in list(getattr(ex, "_processes", {}).values()):  # their chips
                        process.terminate()
                    ex.shutdown(wait=False, cancel_futures=True)
                    raise
                raise EvaluationError(
                    f"a worker process died while running chips {chips[0]}..{chips[-1]} (killed by the system, "
                    f"most likely out of memory); rerun with fewer --workers, or --strategy feed (add --resume DIR "
                    f"to keep the chips that finish)") from None
        return shards


def run_local(job: Job, chips: list[int], workers: int, advance, on_shard=None) -> list[Shard]:
    """``LocalBackend.run`` (``on_shard`` optional)."""
    return backend("local").run(job, chips, workers, advance, on_shard or (lambda shard: None))


__all__ = ["ACTIVATION_FACTOR", "BYTES_PER_WEIGHT_BYTE", "RUNTIME_BYTES", "BatchShare", "LocalBackend", "WorkerPlan",
           "activation_batch_bytes", "available_bytes", "fit_workers", "resolve_workers", "run_local", "worker_bytes"]
