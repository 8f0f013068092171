"""Converter maths shared by training, export and evaluation: activation (DAC/ADC) quantization, and the small
shims that let one formula run on torch tensors or numpy arrays (``nft_deploy.noise`` uses them too).

``quantize_activation`` is re-exported by ``nft_deploy.noise``, where it used to live.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the numpy path does not need it
    import torch


def quantize_activation(x, bits: int, fixed: float | np.ndarray | None = None):
    """Signed DAC/ADC quantization with a dynamic range per sample: ``round(x / m * L) * m / L``,
    ``m = max|x|`` over every axis but the first (the batch), ``L = 2^(bits-1) - 1`` (torch with a
    straight-through gradient, or numpy). Per sample, so a result never depends on its batch.
    ``fixed``: a calibrated range ``m`` instead (``nft_deploy.calibration``), clipping what lies beyond it:
    ``round(clip(x / m * L, -L, L)) * m / L``; an array ``fixed`` is one range per output channel, shaped to
    broadcast over ``x`` (``arrays.adc_fixed``: ranges per array)."""
    if bits < 2:
        raise ValueError(f"quantize_activation: bits must be >= 2 (signed), got {bits}")
    xp = _xp(x)
    torch_in = _is_torch(x)
    levels = 2 ** (bits - 1) - 1
    if fixed is not None:
        m = np.asarray(fixed, np.float32)
        m = m if not torch_in else float(m) if m.ndim == 0 else xp.from_numpy(m).to(device=x.device, dtype=x.dtype)
        q = xp.clip(xp.round(x / m * levels), -levels, levels) * m / levels
        return _ste(x, q.detach()) if torch_in else q
    m = _amax(xp.abs(x.detach() if torch_in else x), tuple(range(1, x.ndim)))
    m = xp.where(m > 0, m, xp.ones_like(m))
    q = xp.round(x / m * levels) * m / levels
    return _ste(x, q.detach()) if torch_in else q


# ---------------------------------------------------------------- small shims


def _is_torch(a) -> bool:
    """True for a torch tensor, without importing torch when nobody has."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def _is_float(a) -> bool:
    return a.dtype.is_floating_point if _is_torch(a) else np.issubdtype(a.dtype, np.floating)


def _xp(a):
    return sys.modules["torch"] if _is_torch(a) else np


def _amax(a, axes):
    if _is_torch(a):
        return a.amax(dim=axes, keepdim=True) if axes else a
    return np.amax(a, axis=axes, keepdims=True)


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Value of ``q``, gradient of ``x`` (straight-through estimator)."""
    return x + (q - x).detach()


__all__ = ["quantize_activation"]
