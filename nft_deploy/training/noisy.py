"""Noisy forwards of any ``nn.Module`` without touching its code.

The device profile decides which layers are on crossbars (``mapped_layers``: Conv -> "Conv",
ConvTranspose -> "ConvTranspose", Linear -> "Gemm"/"MatMul", minus ``mapping.digital_layers``). A noisy
forward replaces those layers' weights with ``NoiseModel.perturb`` copies through
``torch.func.functional_call``: a fresh draw per layer per forward, straight-through rounding, max|W|
detached, biases and batch-norm untouched. All draws come from one seeded ``torch.Generator``.

Several noisy passes of the same batch (OVF's extra forwards, ``noise_injection`` with ``draws=K``) can be
batched with ``torch.func.vmap`` over stacked perturbed weight sets. During those extra passes batch-norm
layers use batch statistics but do not update their running statistics: the backbone pass at the
deployment sigma is the only one that does, in both the batched and the sequential path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import DeviceProfile


@dataclass(frozen=True)
class MappedLayer:
    """A layer whose weight lives on a crossbar."""

    name: str
    """Module path, e.g. ``features.0`` (also the layer name in ONNX and in profile globs)."""
    module: nn.Module
    op_type: str
    """ONNX op type: Conv, ConvTranspose or Gemm (torch Linear)."""
    out_axis: int
    """Output-channel axis of the torch weight (1 for transposed convolutions)."""

    @property
    def weight(self) -> str:
        return f"{self.name}.weight" if self.name else "weight"


def _op_type(module: nn.Module) -> tuple[str, int] | None:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "ConvTranspose", 1
    if isinstance(module, nn.modules.conv._ConvNd):
        return "Conv", 0
    if isinstance(module, nn.Linear):
        return "Gemm", 0
    return None


def mapped_layers(model: nn.Module, profile: DeviceProfile) -> list[MappedLayer]:
    """The crossbar-mapped layers of ``model`` in module order, as ``profile.mapping`` selects them."""
    ops = set(profile.mapping.op_types)
    out = []
    for name, module in model.named_modules():
        kind = _op_type(module)
        if kind is None or profile.is_digital(name):
            continue
        op, axis = kind
        allowed = ("Gemm" in ops or "MatMul" in ops) if op == "Gemm" else op in ops
        if allowed:
            out.append(MappedLayer(name, module, op, axis))
    return out


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Batch-norm uses batch statistics but leaves running statistics alone (restored on exit)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


class NoisyModel:
    """A model plus the device noise that training draws for it."""

    def __init__(self, model: nn.Module, profile: DeviceProfile, generator: torch.Generator):
        self.model, self.profile, self.generator = model, profile, generator
        self.layers = mapped_layers(model, profile)
        self._noise: dict[float | None, list[NoiseModel]] = {}

    @property
    def sigma(self) -> float:
        """The deployment (programming) sigma, in the profile's unit."""
        return self.profile.programming.sigma

    def noise_models(self, sigma: float | None = None) -> list[NoiseModel]:
        """Per-layer noise models, at the profile sigma or at ``sigma`` (every mapped layer)."""
        if sigma not in self._noise:
            prof = self.profile if sigma is None else self.profile.with_sigma(sigma)
            self._noise[sigma] = [NoiseModel.for_layer(prof, lay.name) for lay in self.layers]
        return self._noise[sigma]

    def sample_weights(self, sigma: float | None = None, generator: torch.Generator | None = None
                       ) -> dict[str, torch.Tensor]:
        """One fresh noisy copy of every mapped weight (differentiable, straight-through)."""
        gen = generator or self.generator
        return {lay.weight: nm.perturb(lay.module.weight, gen, lay.out_axis)
                for lay, nm in zip(self.layers, self.noise_models(sigma), strict=True)}

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        """The model as it is, float weights, no device."""
        return self.model(x)

    def noisy(self, x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        """One forward with a fresh draw (updates batch-norm running statistics in training mode)."""
        return functional_call(self.model, self.sample_weights(sigma), (x,))

    def noisy_many(self, x: torch.Tensor, sigmas: Sequence[float | None], batched: bool = True) -> torch.Tensor:
        """One forward per sigma, each with a fresh draw, stacked to (P, batch, ...).

        Draws happen in order before any forward, so ``batched`` (vmap) and sequential passes see the
        same numbers. Batch-norm running statistics are not updated here (see module docstring).
        """
        sets = [self.sample_weights(s) for s in sigmas]
        with frozen_bn_stats(self.model):
            if not batched or len(sets) == 1:
                return torch.stack([functional_call(self.model, p, (x,)) for p in sets])
            stacked = {k: torch.stack([p[k] for p in sets]) for k in sets[0]}

            def one(params, inp):
                return functional_call(self.model, params, (inp,))

            return vmap(one, in_dims=(0, None), randomness="different")(stacked, x)


__all__ = ["MappedLayer", "NoisyModel", "frozen_bn_stats", "mapped_layers"]
