"""Training under ``torchrun``: one process per rank, DistributedDataParallel, files written once.

``torchrun --nproc_per_node N`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; ``distributed(...)`` reads them, checks them, initialises the process group (gloo on CPU,
NCCL on CUDA) unless the caller already did, and destroys it on exit only if it created it. Without those
variables, or with ``WORLD_SIZE=1``, it is a world of one and every method here is a no-op.

What a world of N changes, and nothing else:

- ``--batch-size`` is per rank: one optimiser step sees N x batch_size samples (DDP averages gradients).
- Each epoch, every rank draws the same permutation from the seed and takes every N-th index from its
  rank on (padded by wrapping around, so all ranks take the same number of steps).
- Training noise differs per rank: rank r seeds its generator from (seed, r); rank 0 keeps ``seed``, so a
  one-process run is unchanged. Each rank's share of the batch sees its own draw, so a step averages
  gradients over N draws where one process uses one draw for the whole batch: accuracy under noise can
  differ from a one-process run at the same global batch. Model and head init are identical (seeded,
  and DDP broadcasts them).
- Batch-norm is plain per rank (batch statistics of the rank's own batch); DDP broadcasts rank 0's running
  statistics before each forward, and the trainer syncs them before evaluating.
- Metrics are all-reduced so every rank holds the same numbers; only rank 0 prints, shows progress and
  writes files (``on_main``), and the other ranks wait for it (and receive its result or its error).
- Methods with extra parameters (IRS heads) and extra noisy passes (OVF) work as they are: DDP wraps one
  module whose forward is the whole loss, so every parameter's gradient is averaged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import pickle
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from nft_deploy.errors import ConfigError, NftDeployError
from nft_deploy.training.launch import RankEnv, read_env, resolve_backend, resolve_device
from nft_deploy.training.noisy import frozen_bn_stats

T = TypeVar("T")


def noise_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s training-noise generator: ``seed`` itself on rank 0, mixed with the rank
    elsewhere (numpy SeedSequence), so ranks never share a noise stream."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def shard(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s share of ``order``: every ``world_size``-th entry, padded by wrapping so every rank
    gets ``ceil(len / world_size)`` entries (equal step counts keep DDP in lockstep)."""
    if world_size == 1:
        return order
    per_rank = -(-len(order) // world_size)
    padded = np.resize(order, per_rank * world_size)  # np.resize repeats from the start
    return padded[rank::world_size]


def has_unused_parameters(model: nn.Module, x: torch.Tensor) -> bool:
    """True when a forward of ``x`` leaves a trainable parameter without gradient: DDP must then search
    for unused parameters every step (``find_unused_parameters``), which costs a graph traversal."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return False
    with frozen_bn_stats(model):
        out = model(x)
    grads = torch.autograd.grad(out.float().sum(), params, allow_unused=True)
    return any(g is None for g in grads)


@dataclasses.dataclass(frozen=True)
class Distributed:
    """The process group of one training run, as the trainer uses it (a world of one: no-ops)."""

    env: RankEnv
    backend: str
    device: torch.device
    run_id: str = ""
    """The same random id on every rank: the prefix of this run's keys in the process group's store."""
    _calls: Iterator[int] = dataclasses.field(default_factory=itertools.count, repr=False, compare=False)
    """Numbers the ``on_main`` calls (every rank makes the same calls, so the numbers agree)."""

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def enabled(self) -> bool:
        return self.env.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.env.rank == 0

    def shard(self, order: np.ndarray) -> np.ndarray:
        return shard(order, self.rank, self.world_size)

    def wrap(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` under DistributedDataParallel (its forward must compute the loss), or itself."""
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                                   find_unused_parameters=find_unused_parameters)

    def _reduce(self, values: Sequence[float], op) -> list[float]:
        if not self.enabled:
            return [float(v) for v in values]
        dev = self.device if self.backend == "nccl" else torch.device("cpu")
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=dev)
        dist.all_reduce(t, op=op)
        return t.tolist()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (the same list on every rank)."""
        return self._reduce(values, dist.ReduceOp.SUM)

    def max(self, values: Sequence[float]) -> list[float]:
        """Element-wise maximum over ranks."""
        return self._reduce(values, dist.ReduceOp.MAX)

    @torch.no_grad()
    def sync_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (batch-norm running statistics) on every rank."""
        if self.enabled:
            for b in module.buffers():
                dist.broadcast(b, src=0)

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (pickled); a collective, so it also waits for rank 0."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0 only; every rank returns its result after it finished, or raises its error.

        The result travels through the process group's key-value store, not a gloo collective: a gloo
        worker thread can still be releasing the Python tensors of a just-finished collective when the
        interpreter exits, which aborts the process (torch 2.13). Ranks > 0 acknowledge, so rank 0 (which
        may host the store) leaves last.
        """
        if not self.enabled:
            return fn()
        store = dist.distributed_c10d._get_default_store()
        key = f"nft_deploy/{self.run_id}/on_main/{next(self._calls)}"
        if not self.is_main:
            store.wait([key])
            ok, value = pickle.loads(store.get(key))
            store.set(f"{key}/ack/{self.rank}", b"1")
            if not ok:
                raise value
            return value
        try:
            value = fn()
        except Exception as e:
            err = e if isinstance(e, NftDeployError) else RuntimeError(f"rank 0 failed: {type(e).__name__}: {e}")
            self._publish(store, key, (False, err))
            raise
        self._publish(store, key, (True, value))
        return value

    def _publish(self, store, key: str, message: tuple) -> None:
        store.set(key, pickle.dumps(message))
        store.wait([f"{key}/ack/{r}" for r in range(1, self.world_size)])


@contextlib.contextmanager
def distributed(device: str = "cpu", backend: str | None = None, expect_world_size: int | None = None,
                env: Mapping[str, str] | None = None) -> Iterator[Distributed]:
    """The run's ``Distributed``: joins the torchrun job (or an already initialised process group).

    Initialises the process group if needed and destroys it on exit only if it initialised it.
    """
    if dist.is_available() and dist.is_initialized():
        rank_env = _from_group(env)
        chosen = dist.get_backend()
    else:
        rank_env = read_env(env)
        chosen = resolve_backend(backend, device)
    if expect_world_size is not None and expect_world_size != rank_env.world_size:
        raise ConfigError(f"--expect-world-size: {expect_world_size}, but this job has {rank_env.world_size} "
                          f"process(es) (WORLD_SIZE); launch with torchrun --nproc_per_node {expect_world_size}")
    dev = resolve_device(device, rank_env)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    created = rank_env.world_size > 1 and not dist.is_initialized()
    if created:
        dist.init_process_group(chosen, init_method="env://", rank=rank_env.rank, world_size=rank_env.world_size)
    try:
        d = Distributed(rank_env, chosen, dev)
        yield dataclasses.replace(d, run_id=d.broadcast(uuid.uuid4().hex)) if d.enabled else d
    except RuntimeError as e:
        if rank_env.world_size == 1 or not lost_peer(e):
            raise
        raise ConfigError(f"rank {rank_env.rank}: another process of this {rank_env.world_size}-process job stopped "
                          f"({str(e).strip().splitlines()[0][:160]}); the job is stopped and nothing was written; see "
                          "that rank's own message above") from None
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def lost_peer(e: BaseException) -> bool:
    """True when a collective failed because another rank died or left (gloo and NCCL say so in words)."""
    text = str(e)
    return isinstance(e, dist.DistError) or any(k in text for k in ("Connection closed by peer", "Connection reset",
                                                                      "gloo", "NCCL"))


def _from_group(env: Mapping[str, str] | None) -> RankEnv:
    """Rank and world of a process group the caller initialised (local rank from LOCAL_RANK, else 0)."""
    env = os.environ if env is None else env
    world = dist.get_world_size()
    local = int(env.get("LOCAL_RANK", "0") or 0)
    local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)) or world)
    return RankEnv(dist.get_rank(), world, local, local_world)


def describe(d: Distributed) -> dict[str, Any]:
    """JSON-ready summary for the training log."""
    return {"world_size": d.world_size, "backend": d.backend if d.enabled else None, "device": str(d.device)}


__all__ = ["Distributed", "RankEnv", "describe", "distributed", "has_unused_parameters", "noise_seed",
           "read_env",
           "resolve_backend", "resolve_device", "shard"]
