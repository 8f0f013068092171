"""Checkpoints that load without running code: a state dict plus plain metadata.

Format (a dict saved with ``torch.save``; everything loads under ``torch.load(weights_only=True)``):
``format`` ("nft-deploy-checkpoint"), ``version`` (1), ``arch`` {"name", "kwargs"}, ``state_dict``
(backbone only: no IRS heads), ``profile`` (the profile JSON as a dict), ``method`` {"name", params...},
``metrics`` (floats), ``data`` (data set name), ``input_shape`` (one sample's shape).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from nft_deploy.atomic import atomic_write, atomic_write_with
from nft_deploy.errors import CheckpointError

CHECKPOINT_FORMAT = "nft-deploy-checkpoint"
CHECKPOINT_VERSION = 1

__all__ = ["atomic_write", "build_from_checkpoint", "load_checkpoint", "load_weights_only", "save_checkpoint"]
"""``atomic_write`` lives in ``nft_deploy.atomic``; it is re-exported here for existing callers."""


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, arch: dict[str, Any], profile: dict | None,
                    method: dict[str, Any], metrics: dict[str, Any] | None = None, data: str | None = None,
                    input_shape: tuple[int, ...] | None = None) -> Path:
    """Write a weights-only checkpoint atomically; ``arch`` is {"name": ..., "kwargs": {...}}."""
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arch": {"name": arch["name"], "kwargs": dict(arch.get("kwargs", {}))},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "profile": profile,
        "method": dict(method),
        "metrics": dict(metrics or {}),
        "data": data,
        "input_shape": list(input_shape) if input_shape is not None else None,
    }
    atomic_write_with(path, lambda buf: torch.save(ckpt, buf))
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load our checkpoint format safely (``weights_only=True``); clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    ckpt = load_weights_only(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an nft-deploy checkpoint (no 'format': '{CHECKPOINT_FORMAT}'); "
                              "for a plain state dict pass --model NAME")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: version: checkpoint version {ckpt.get('version')!r} is not supported "
                              f"(this nft-deploy reads version {CHECKPOINT_VERSION})")
    arch = ckpt.get("arch")
    if not (isinstance(arch, dict) and isinstance(arch.get("name"), str) and isinstance(arch.get("kwargs", {}), dict)):
        raise CheckpointError(f"{path}: arch: must be {{'name': str, 'kwargs': dict}}, got {arch!r:.80}")
    state = ckpt.get("state_dict")
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise CheckpointError(f"{path}: state_dict: must be a dict of tensors")
    return ckpt


def load_weights_only(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with one-line errors; never unpickles arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = (str(e).splitlines() or [""])[0]
        if "weights only load failed" not in first.lower() or "Unsupported global" not in str(e):
            raise CheckpointError(f"{path}: not a torch checkpoint, or one a weights-only load refuses "
                                  f"({_refused_reason(str(e)) if 'weights only' in first.lower() else first})") from None
        raise CheckpointError(f"{path}: holds Python objects that a weights-only load refuses (a pickled "
                              f"module?); re-save a state dict, or pass --trust-checkpoint if you trust the "
                              f"file ({_refused_reason(str(e))})") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types (KeyError, UnicodeDecodeError...) on junk
        first = (str(e).splitlines() or [""])[0] or type(e).__name__
        raise CheckpointError(f"{path}: not a torch checkpoint ({first})") from None


def _refused_reason(text: str) -> str:
    """The line of torch's long weights-only message that names what was refused."""
    for line in text.splitlines():
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.strip()[:200]
    return "weights_only=True"


def build_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """The built-in model a checkpoint describes, with its weights, in eval mode."""
    from nft_deploy.models import build_model

    arch = ckpt["arch"]
    try:
        model = build_model(arch["name"], **arch.get("kwargs", {}))
    except TypeError as e:
        raise CheckpointError(f"arch.kwargs: {arch.get('kwargs')!r} do not fit model {arch['name']!r} ({e})") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"state_dict does not match model {arch['name']!r}: {str(e).splitlines()[0]}") from None
    return model.eval()
