"""Noisy forwards of any ``nn.Module`` without touching its code.

The model's device plan (``training.crossbars.torch_plan``, the same rows its export gets) decides which layers are
on crossbars, their noise and their converters. A noisy forward replaces those layers' weights with
``NoiseModel.perturb`` copies through ``torch.func.functional_call`` and applies the plan's DAC/ADC: a
fresh draw per layer per forward, straight-through rounding, max|W| detached, biases and batch-norm
untouched. All draws come from one seeded ``torch.Generator``.

Several noisy passes of the same batch (OVF's extra forwards, ``noise_injection`` with ``draws=K``) can be
batched with ``torch.func.vmap`` over stacked perturbed weight sets. During those extra passes batch-norm
layers use batch statistics but do not update their running statistics: the backbone pass at the
deployment sigma is the only one that does, in both the batched and the sequential path (OVF's
``--ovf-bn-stats all`` lets every pass update them, as the reference code does).

Sequential extra passes without autograd (OVF's ``--ovf-feedback-grad none``) on CPU pass their conv weights
channels-last, so the convolutions' outputs and everything after them (ReLU, pooling, batch-norm) run
channels-last: on CPU that is ~1.5-2x faster than NCHW, where max-pooling does not vectorise. Same draws, same
maths; convolution and batch-norm may round differently from an NCHW pass (LeNet-5's logits measured
identical, VGG-8's within float32 rounding). A model that cannot take it (``x.view`` of a channels-last
activation) is run NCHW from then on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from nft_deploy.device_plan import DevicePlan, LayerPlan
from nft_deploy.drift import perturb
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import DeviceProfile
from nft_deploy.training.crossbars import has_converters, in_graph_layout, on_device, torch_plan


def mapped_layers(model: nn.Module, profile: DeviceProfile, sample: torch.Tensor) -> list[LayerPlan]:
    """The crossbar-mapped layers of ``model`` in call order, as its device plan selects them."""
    return torch_plan(model, profile, sample).mapped


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
    """A model plus the device noise that training draws for it, as its device plan says."""

    def __init__(self, model: nn.Module, profile: DeviceProfile, generator: torch.Generator,
                 sample: torch.Tensor):
        self.model, self.generator = model, generator
        self.plan = torch_plan(model, profile, sample)
        self._plans: dict[float | None, DevicePlan] = {None: self.plan}
        self.vmaps: bool | None = None
        """Whether batched passes run under vmap: None until one tries (False: an op has no batching rule)."""
        self.channels_last: bool | None = None
        """Whether constant passes run channels-last: None until the first one tries (False: the model refused)."""
        self.ramp = 1.0
        """Every training draw's sigma is multiplied by this (``--sigma-warmup`` sets it per step; 1: as planned)."""

    @property
    def profile(self) -> DeviceProfile:
        return self.plan.profile

    @property
    def layers(self) -> list[LayerPlan]:
        return self.plan.mapped

    @property
    def sigma(self) -> float:
        """The deployment (programming) sigma, in the profile's unit."""
        return self.plan.sigma

    def plan_at(self, sigma: float | None = None) -> DevicePlan:
        """The plan at programming sigma ``sigma`` (the meaning of ``--sigma``: overrides keep their ratio)."""
        if sigma not in self._plans:
            self._plans[sigma] = self.plan.with_sigma(sigma)
        return self._plans[sigma]

    def noise_models(self, sigma: float | None = None) -> list[NoiseModel]:
        """Per-layer noise models of the mapped layers at the plan's sigma or at ``sigma``."""
        return [lay.noise for lay in self.plan_at(sigma).mapped]

    def mapped_weights(self) -> list[nn.Parameter]:
        """The parameters of the mapped layers, in plan order."""
        params = dict(self.model.named_parameters())
        return [params[lay.weight] for lay in self.layers]

    def sample_weights(self, sigma: float | None = None, generator: torch.Generator | None = None
                       ) -> dict[str, torch.Tensor]:
        """One fresh noisy copy of every mapped weight (differentiable, straight-through)."""
        gen = generator or self.generator
        params = dict(self.model.named_parameters())
        # during a warm-up every step has its own sigma: that plan is made for the step, not cached
        plan = self.plan_at(sigma) if self.ramp == 1.0 else self.plan.with_sigma((self.sigma if sigma is None else sigma) * self.ramp)
        return {lay.weight: in_graph_layout(lay, params[lay.weight], lambda w, lay=lay: perturb(lay.noise, w, gen, lay.out_axis))
                for lay in plan.mapped}

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        """The model as it is, float weights, no device."""
        return self.model(x)

    def noisy(self, x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        """One forward with a fresh draw and the plan's converters (updates batch-norm running statistics
        in training mode)."""
        return on_device(self.model, self.plan, self.sample_weights(sigma), x)

    def noisy_many(self, x: torch.Tensor, sigmas: Sequence[float | None], batched: bool = True,
                   update_bn: bool = False) -> torch.Tensor:
        """One forward per sigma, each with a fresh draw, stacked to (P, batch, ...).

        Draws happen in order before any forward, so ``batched`` (vmap) and sequential passes see the
        same numbers. Batch-norm running statistics are not updated here (see module docstring) unless
        ``update_bn`` (the NFT reference code's OVF: every pass updates them, one pass after another).
        """
        sets = [self.sample_weights(s) for s in sigmas]
        if update_bn:
            return torch.stack([on_device(self.model, self.plan, p, x) for p in sets])
        with frozen_bn_stats(self.model):
            # converters key on tensor identity, which vmap's wrappers hide; vmap needs a weight to map over
            if batched and len(sets) > 1 and sets[0] and not has_converters(self.plan) and self.vmaps is not False:
                stacked = {k: torch.stack([p[k] for p in sets]) for k in sets[0]}

                def one(params, inp):
                    return functional_call(self.model, params, (inp,))

                try:
                    out, self.vmaps = vmap(one, in_dims=(0, None), randomness="different")(stacked, x), True
                    return out
                except RuntimeError as e:  # an op without a batching rule (torch.lstm, torch.gru): one by one
                    if self.vmaps or "Batching rule not implemented" not in str(e):
                        raise
                    self.vmaps = False
            if not torch.is_grad_enabled() and x.device.type == "cpu" and self.channels_last is not False:
                return self._channels_last_passes(x, sets)
            return torch.stack([on_device(self.model, self.plan, p, x) for p in sets])

    def _channels_last_passes(self, x: torch.Tensor, sets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """The sequential passes with channels-last conv weights (no autograd, CPU); NCHW if the model refuses."""
        convs = {lay.weight for lay in self.layers if lay.op == "Conv" and len(lay.shape) == 4}
        outs = []
        for p in sets:
            p = {k: _channels_last(w) if k in convs else w for k, w in p.items()}
            if self.channels_last is None:  # the first pass finds out whether the model takes it
                try:
                    out = on_device(self.model, self.plan, p, x)
                except RuntimeError:
                    self.channels_last = False
                    return torch.stack([on_device(self.model, self.plan, q, x) for q in sets])
                self.channels_last = True
            else:
                out = on_device(self.model, self.plan, p, x)
            outs.append(out.contiguous())
        return torch.stack(outs)


def _channels_last(w: torch.Tensor) -> torch.Tensor:
    """``w`` (out, in, kh, kw) with channels-last strides, also for one input channel, where
    ``contiguous(memory_format=torch.channels_last)`` keeps NCHW strides and torch would run the conv NCHW."""
    _, c, h, k = w.shape
    return torch.empty_strided(w.shape, (c * h * k, 1, k * c, c), dtype=w.dtype, device=w.device).copy_(w)


__all__ = ["NoisyModel", "frozen_bn_stats", "mapped_layers"]
