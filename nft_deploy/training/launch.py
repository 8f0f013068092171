"""What ``torchrun`` told this process, checked before any process group starts: rank, world size, local
rank (``read_env``), the process-group backend and the torch device of this rank. A bad or partial set of
variables, or a backend the device cannot use, is one ``ConfigError`` naming the variable or flag."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import torch
import torch.distributed as dist

from nft_deploy.errors import ConfigError
from nft_deploy.training.config import DIST_BACKENDS


@dataclasses.dataclass(frozen=True)
class RankEnv:
    """Where this process sits in a torchrun job (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1


def _int_var(env: Mapping[str, str], name: str, low: int, high: int | None, why: str) -> int:
    raw = env.get(name)
    if raw is None:
        raise ConfigError(f"{name}: not set, but WORLD_SIZE is ({env['WORLD_SIZE']}); {why}")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not an integer; {why}") from None
    if value < low or (high is not None and value >= high):
        allowed = f">= {low}" if high is None else f"from {low} to {high - 1}"
        raise ConfigError(f"{name}: {value} is out of range; allowed {allowed} ({why})")
    return value


def read_env(env: Mapping[str, str] | None = None) -> RankEnv:
    """The torchrun variables, checked: a bad or partial set is a ConfigError naming the variable."""
    env = os.environ if env is None else env
    why = "launch with torchrun --nproc_per_node N, or unset RANK, LOCAL_RANK and WORLD_SIZE"
    if "WORLD_SIZE" not in env:
        stray = [k for k in ("RANK", "LOCAL_RANK") if k in env]
        if stray:
            raise ConfigError(f"WORLD_SIZE: not set, but {stray[0]} is ({env[stray[0]]}); {why}")
        return RankEnv()
    world = _int_var(env, "WORLD_SIZE", 1, None, why)
    rank = _int_var(env, "RANK", 0, world, why)
    local_world = _int_var(env, "LOCAL_WORLD_SIZE", 1, world + 1, why) if "LOCAL_WORLD_SIZE" in env else world
    local = _int_var(env, "LOCAL_RANK", 0, local_world, why)
    if world > 1 and not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not env.get(name):
                raise ConfigError(f"{name}: not set, but WORLD_SIZE is {world}; {why}")
    return RankEnv(rank, world, local, local_world)


def resolve_backend(requested: str | None, device: str) -> str:
    """gloo on CPU, NCCL on CUDA; an explicit choice is checked against the device."""
    cuda = device.startswith("cuda")
    if requested is None:
        return "nccl" if cuda and dist.is_nccl_available() else "gloo"
    if requested not in DIST_BACKENDS:
        raise ConfigError(f"--dist-backend: {requested!r}; choose one of: {', '.join(DIST_BACKENDS)}")
    if requested == "nccl":
        if not torch.cuda.is_available() or not dist.is_nccl_available():
            raise ConfigError("--dist-backend: nccl needs CUDA, which this machine (or this torch build) lacks; "
                              "use gloo")
        if not cuda:
            raise ConfigError("--dist-backend: nccl needs --device cuda; use gloo with --device cpu")
    return requested


def resolve_device(name: str, env: RankEnv) -> torch.device:
    """``cpu``, or the CUDA device of this rank (``cuda`` -> ``cuda:LOCAL_RANK`` under torchrun)."""
    if not name.startswith("cuda"):
        return torch.device(name)
    if not torch.cuda.is_available():
        raise ConfigError(f"--device: {name!r} requested but CUDA is not available; use --device cpu")
    if env.world_size > 1:
        if name != "cuda":
            raise ConfigError(f"--device: {name!r} under torchrun; give plain 'cuda' (rank uses cuda:LOCAL_RANK)")
        name = f"cuda:{env.local_rank}"
    device = torch.device(name)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(f"--device: {name!r} but this machine has {count} CUDA device(s) (0 to {count - 1})")
    return device
