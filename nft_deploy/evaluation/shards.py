"""One process's share of a Monte Carlo: the job shipped to a worker, a chip runner, and the reduced sums.

One chip = one programmed instance: ``chips.draw_chip(plan.mapped, weights, seed, chip)`` fed through
``chips.chip_feeds`` into the graph's own programming nodes, layer by layer (``programming``), and held
fixed over the whole evaluation set; read noise (random nodes in the graph) is redrawn per inference,
from a per-chip seed. Two ways to run a programmed chip, same numbers:

- ``fold``: the programmed weights are initializers of a fresh session, so ONNX Runtime pre-packs them
  when it builds the session (NCHWc conv kernels stay on);
- ``feed``: one session for all chips, the programmed weights fed as graph inputs (no per-chip build).

Every backend (``backends``: ``local_backend``, ``ray_backend``, any registered one) runs chips through
``shard_stream`` or ``run_shard``; chip seeds do not depend on the sharding or the order and the sums merge
exactly, so results do not depend on the backend.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from nft_deploy.data import batches
from nft_deploy.data.dataset import take
from nft_deploy.device_plan import LayerPlan
from nft_deploy.evaluation import metrics as M
from nft_deploy.evaluation.programming import InferenceGraph, Programmer, SplitGraph
from nft_deploy.evaluation.results import ChipMetrics

READ_NOISE_KEY = zlib.crc32(b"nft.read")


@dataclass
class Job:
    """Everything a worker needs to run chips (picklable; sent once per worker)."""

    split: SplitGraph
    layers: list[LayerPlan]
    weights: dict[str, np.ndarray]
    output_name: str
    x: dict[str, np.ndarray]
    """The model's inputs by name, each in the dtype the graph declares (``inputs.model_inputs``)."""
    y: np.ndarray
    clean_pred: np.ndarray
    num_classes: int
    seed: int
    sigma_factors: dict[str, float] | None
    strategy: str
    batch_size: int
    threads: int
    n_bins: int
    read_noise: bool
    times: tuple[float, ...] = ()
    """Seconds after programming at which every chip is read (drift); (): once, at t0."""


@dataclass
class Shard:
    """The reduced results of some chips."""

    chips: list[ChipMetrics] = field(default_factory=list)
    probs: M.MeanProbSum | None = None
    bins: M.BinSum | None = None


class ChipRunner:
    """Runs chips of one job in this process, reusing what can be reused."""

    def __init__(self, job: Job):
        self.job = job
        self.programmer = Programmer(job.split, job.layers, job.weights)
        self.graph = InferenceGraph(job.split, job.weights)

    def run(self, chip: int, probs: M.MeanProbSum) -> M.ChipAccumulator:
        """One chip over the data, read at every time of the job; the accumulator of the last read, with the
        accuracy of each (``accuracy_at``); ``probs`` gets the last read's softmax."""
        j = self.job
        read = np.random.SeedSequence(j.seed, spawn_key=(chip, READ_NOISE_KEY)) if j.read_noise else None
        times = j.times or (None,)
        accuracy_at = []
        for i, seconds in enumerate(times):
            programmed = self.programmer.program(j.seed, chip, j.sigma_factors, seconds)
            session, feeds = self.graph.session(programmed, read, j.threads, fold=j.strategy == "fold")
            del programmed
            acc = M.ChipAccumulator(chip, j.n_bins)
            for idx in batches(len(j.y), j.batch_size):
                logits = session.run([j.output_name], {**take(j.x, idx), **feeds})[0]
                p = M.softmax(logits.reshape(len(idx), -1))
                acc.update(p, j.y[idx], j.clean_pred[idx])
                if i == len(times) - 1:
                    probs.add(idx, p)
            accuracy_at.append(acc.correct / max(acc.n, 1))
        probs.chips += 1
        acc.accuracy_at = accuracy_at if j.times else []
        return acc


def shard_stream(job: Job, chips: list[int]) -> Iterator[ChipMetrics | Shard]:
    """Runs ``chips`` in order, yielding each chip's metrics as it is done, then the shard's sums (a
    ``Shard`` whose ``chips`` is empty: the caller keeps the metrics it was given)."""
    runner = ChipRunner(job)
    shard = Shard(probs=M.MeanProbSum(len(job.y), job.num_classes), bins=M.BinSum(job.n_bins))
    for chip in chips:
        acc = runner.run(chip, shard.probs)
        shard.bins.add_chip(acc)
        yield acc.finish()
    yield shard


def run_shard(job: Job, chips: list[int], advance=None) -> Shard:
    done = []
    for item in shard_stream(job, chips):
        if isinstance(item, Shard):
            item.chips = done
            return item
        done.append(item)
        if advance is not None:
            advance(1)
    raise AssertionError("shard_stream ends with a Shard")


def chunks(chips: list[int], workers: int) -> list[list[int]]:
    """Chip indices split into several chunks per worker (load balance); order does not matter."""
    return [c.tolist() for c in np.array_split(np.asarray(chips), min(len(chips), workers * 4))]


__all__ = ["READ_NOISE_KEY", "ChipRunner", "Job", "Shard", "chunks", "run_shard", "shard_stream"]
