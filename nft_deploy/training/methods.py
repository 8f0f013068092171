"""Training methods, each a small unit selectable by name (``METHODS``).

A method turns one batch into a loss through a ``NoisyModel``; it may own extra trainable parameters
(IRS heads) that never become part of the backbone. Parameters are typed fields; ``params()`` gives the
JSON stored in the checkpoint's ``method`` entry.

- ``plain``: cross-entropy, no noise.
- ``noise_injection``: cross-entropy with a fresh profile draw in every forward; ``draws=K`` averages
  the loss over K draws per step (K = N + 1 spends OVF's compute on noise injection).
- ``temperature``: ``CE(z / T)`` with noise, no feedback: OVF's ``/(N + 1)`` alone (ablation).
- ``correctnet``: noise injection + ``lambda * sum ||W^T W - I||_F^2`` over the mapped layers.
- ``ovf``: backbone at the profile sigma plus N forwards at sigma + offsets, feedback loss; the N forwards
  enter as constants unless ``feedback_grad="full"`` (the reference) backpropagates through them.
- ``irs``: snapshot heads on intermediate layers (``nft_deploy.training.irs``), feedback loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from nft_deploy.training.config import TrainConfig
from nft_deploy.training.irs import IRS
from nft_deploy.training.losses import (
    default_gammas,
    default_offsets,
    feedback_loss,
    orthogonality_penalty,
)
from nft_deploy.training.noisy import NoisyModel


class Method(Protocol):
    """What the trainer needs from a method."""

    name: ClassVar[str]
    noisy: ClassVar[bool]

    def loss(self, net: NoisyModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def params(self) -> dict: ...

    def parameters(self) -> list[nn.Parameter]: ...

    def close(self) -> None: ...


class _Simple:
    """Shared plumbing of the methods without their own parameters or hooks."""

    def params(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k != "batched"}

    def parameters(self) -> list[nn.Parameter]:
        return []

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Plain(_Simple):
    """Cross-entropy without noise: the accuracy that device variation destroys."""

    name: ClassVar[str] = "plain"
    noisy: ClassVar[bool] = False

    def loss(self, net, x, y):
        return F.cross_entropy(net.clean(x), y)


@dataclass(frozen=True)
class NoiseInjection(_Simple):
    """Cross-entropy under fresh device noise, averaged over ``draws`` draws per step."""

    draws: int = 1
    batched: bool = True
    name: ClassVar[str] = "noise_injection"
    noisy: ClassVar[bool] = True

    def loss(self, net, x, y):
        loss = F.cross_entropy(net.noisy(x), y)
        if self.draws == 1:
            return loss
        outs = net.noisy_many(x, [None] * (self.draws - 1), self.batched)
        return (loss + sum(F.cross_entropy(o, y) for o in outs)) / self.draws


@dataclass(frozen=True)
class Temperature(_Simple):
    """``CE(z / T)`` under noise: the temperature part of OVF without its feedback term."""

    temperature: float = 4.0
    name: ClassVar[str] = "temperature"
    noisy: ClassVar[bool] = True

    def loss(self, net, x, y):
        return F.cross_entropy(net.noisy(x) / self.temperature, y)


@dataclass(frozen=True)
class CorrectNet(_Simple):
    """Noise injection plus CorrectNet's orthogonality regulariser (no compensation layers)."""

    lam: float = 5e-4
    name: ClassVar[str] = "correctnet"
    noisy: ClassVar[bool] = True

    def loss(self, net, x, y):
        return F.cross_entropy(net.noisy(x), y) + self.lam * orthogonality_penalty(net.mapped_weights())


@dataclass(frozen=True)
class OVF(_Simple):
    """Oriented Variational Forward: N extra forwards at larger sigma feed back negatively.

    ``feedback_grad="full"`` is the reference: gradients flow through all N + 1 passes. ``"none"`` (the
    default) runs the N extra passes under ``torch.no_grad``: they draw the same noise in the same order and
    give the same loss value (up to float rounding: on CPU they run channels-last, see ``NoisyModel``), but
    enter it as constants, so the step skips their backward and autograd memory. Their gradient is scaled by
    beta * gamma_n / (N + 1) (2.5e-4 at beta 1e-3), which is why dropping it measured no accuracy difference.
    """

    beta: float = 1e-3
    offsets: tuple[float, ...] = (0.15, 0.10, 0.05)
    gammas: tuple[float, ...] = (1.0, 0.1, 0.01)
    feedback_grad: str = "none"
    batched: bool = True
    name: ClassVar[str] = "ovf"
    noisy: ClassVar[bool] = True

    def loss(self, net, x, y):
        z = net.noisy(x)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.feedback_grad == "full"):
            outs = net.noisy_many(x, [net.sigma + o for o in self.offsets], self.batched)
        return feedback_loss(z, outs, y, self.beta, self.gammas)


METHODS = {m.name: m for m in (Plain, NoiseInjection, Temperature, CorrectNet, OVF, IRS)}


def make_method(config: TrainConfig, net: NoisyModel, sample_x: torch.Tensor, num_classes: int,
                model_name: str | None) -> Method:
    """The method ``config.method`` with its parameters (reference defaults where the config says None).

    ``model_name`` is the built-in architecture (None for a user module): it picks IRS defaults.
    """
    name, n = config.method, config.ovf_n
    if name == "plain":
        return Plain()
    if name == "noise_injection":
        return NoiseInjection(draws=config.draws, batched=config.use_vmap)
    if name == "temperature":
        return Temperature(temperature=config.temperature or float(n + 1))
    if name == "correctnet":
        return CorrectNet(lam=config.correctnet_lambda)
    if name == "ovf":
        return OVF(beta=1e-3 if config.beta is None else config.beta,
                   offsets=tuple(config.ovf_offsets or default_offsets(n)),
                   gammas=tuple(config.gammas or default_gammas(n)), feedback_grad=config.ovf_feedback_grad,
                   batched=config.use_vmap)
    return IRS.from_config(config, net, sample_x, num_classes, model_name)


__all__ = ["METHODS", "CorrectNet", "IRS", "Method", "NoiseInjection", "OVF", "Plain", "Temperature", "make_method"]
