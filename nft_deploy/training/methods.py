"""Training methods, each a small unit registered by name (``@register_method``) with its option dataclass.

A method turns one batch into a loss through a ``NoisyModel``; it may own extra trainable parameters
(IRS heads) that never become part of the backbone. Parameters are typed fields; ``params()`` gives the
JSON stored in the checkpoint's ``method`` entry. ``make_method`` looks ``config.method`` up in the registry
and calls the class's ``from_options(options, context)`` with the method's option dataclass.

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

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from nft_deploy.errors import ConfigError
from nft_deploy.training.config import (
    METHODS,
    OVF_FEEDBACK_GRADS,
    NoOptions,
    TrainConfig,
    method_spec,
    option,
    register_method,
    registered_methods,
    unregister_method,
)
from nft_deploy.training.losses import (
    PENALTY_SHAPES,
    FeedbackConfig,
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


@dataclass(frozen=True)
class MethodContext:
    """What ``from_options`` may use besides the method's options: the run's config, the noisy model, two
    probe samples, the number of classes and the built-in model name (None for a user module)."""

    config: TrainConfig
    net: NoisyModel
    sample_x: torch.Tensor
    num_classes: int
    model_name: str | None

    @property
    def batched(self) -> bool:
        """Run extra noisy passes with vmap (``TrainConfig.use_vmap``)."""
        return self.config.use_vmap


class SimpleMethod:
    """Shared plumbing of the methods without their own parameters or hooks (a dataclass subclass)."""

    name: ClassVar[str]
    noisy: ClassVar[bool] = True

    @classmethod
    def from_options(cls, options: Any, context: MethodContext) -> SimpleMethod:
        """The method with the options' fields of the same names (and ``batched`` from the config)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name in names}
        if "batched" in names:
            kwargs["batched"] = context.batched
        return cls(**kwargs)

    def params(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k != "batched"}

    def parameters(self) -> list[nn.Parameter]:
        return []

    def close(self) -> None:
        pass



@dataclass(frozen=True)
class NoiseInjectionConfig:
    """noise_injection options."""

    draws: int = option(1, "noise_injection: average the loss over K noise draws per step.", check="positive_int")
    """Average the loss over K fresh noise draws per step (K = N+1 matches OVF's compute)."""


@dataclass(frozen=True)
class TemperatureConfig:
    """temperature options."""

    temperature: float | None = option(None, "temperature method: T in CE(z/T) (default N+1).", check="positive")
    """CE(z / T) with noise; None: N + 1 (N: ``ovf_n``)."""
    n: int = option(3, flat="ovf_n", flag=False, check="positive_int")
    """N of the OVF run this ablates (shares ``ovf_n`` / ``--ovf-n``): the default T is N + 1."""


@dataclass(frozen=True)
class CorrectNetConfig:
    """correctnet options."""

    penalty: float = option(5e-4, flat="correctnet_lambda", flag=False)
    """Weight lambda of sum ||W^T W - I||_F^2 (``TrainConfig(correctnet_lambda=...)``; no CLI flag)."""
    shape: str = option("matrix", "correctnet: W is each weight as an (out, fan_in) matrix, or each kh x kw "
                        "conv kernel (kernel: the NFT reference code).", flat="correctnet_penalty",
                        choices=PENALTY_SHAPES)
    """matrix: W^T W - I per weight reshaped to (out, fan_in); kernel: per kh x kw kernel of each convolution
    (``w.view(-1, kh, kw)``, as the NFT reference code reproduces CorrectNet)."""


OVF_BN_STATS = ("backbone", "all")
OVF_BETA = {"vgg8": 1e-3, "resnet18": 1e-4}
"""OVF's default beta per built-in model: the NFT reference code's MNIST values; 1e-3 for any other model."""


@dataclass(frozen=True)
class OVFConfig(FeedbackConfig):
    """ovf options."""

    n: int = option(3, "OVF: number of extra forwards N.", flat="ovf_n", check="positive_int")
    """Number of extra forwards N."""
    offsets: tuple[float, ...] | None = option(None, "OVF: sigma offsets, comma-separated (default 0.15,0.10,0.05).",
                                               flat="ovf_offsets")
    """Sigma offsets of the extra forwards (profile unit); None: 0.15, 0.10, 0.05 (0.05 * (N-n+1))."""
    feedback_grad: str = option(
        "none", "OVF: none: the N extra forwards run without gradient, as constants in the loss (same draws and loss "
                "value up to rounding, ~1.8-2.2x a noise-injection step instead of ~3.9x); full: the reference, "
                "backpropagate through them.", flat="ovf_feedback_grad", choices=OVF_FEEDBACK_GRADS)
    """none runs the N extra forwards under no_grad as constants in the loss (same draws and loss value up
    to float rounding, no backward through them, channels-last on CPU: 1.8-2.2x a noise-injection step instead
    of 3.7-4.0x, accuracy equal within the seed CI at beta 1e-3, benchmarks/results/ovf_feedback_grad*.md); full:
    the reference, gradients flow through all N + 1 forwards."""
    bn_stats: str = option("backbone", "OVF: batch-norm running statistics updated by the backbone pass only, or by "
                           "all N + 1 passes (all: the NFT reference code).", flat="ovf_bn_stats",
                           choices=OVF_BN_STATS)
    """backbone: only the pass at the deployment sigma updates batch-norm running statistics; all: every pass
    does, one after another (the reference code runs all N + 1 forwards in train mode; no vmap then)."""

    def validate(self, selected: bool = True) -> None:
        if self.offsets is not None and len(self.offsets) != self.n:
            raise ConfigError(f"--ovf-offsets: {len(self.offsets)} offsets for --ovf-n {self.n}; give one per "
                              "extra forward")
        if selected and self.gammas is not None and len(self.gammas) != self.n:
            raise ConfigError(f"--gammas: {len(self.gammas)} values for --ovf-n {self.n}; give one per extra forward")
        if self.offsets is not None and any(o < 0 for o in self.offsets):
            raise ConfigError(f"--ovf-offsets: must be >= 0 (more variation than at inference), got {self.offsets}")


@register_method("plain")
@dataclass(frozen=True)
class Plain(SimpleMethod):
    """Cross-entropy without noise: the accuracy that device variation destroys."""

    noisy: ClassVar[bool] = False

    def loss(self, net, x, y):
        return F.cross_entropy(net.clean(x), y)


@register_method("noise_injection", config=NoiseInjectionConfig)
@dataclass(frozen=True)
class NoiseInjection(SimpleMethod):
    """Cross-entropy under fresh device noise, averaged over ``draws`` draws per step."""

    draws: int = 1
    batched: bool = True
    noisy: ClassVar[bool] = True

    def loss(self, net, x, y):
        loss = F.cross_entropy(net.noisy(x), y)
        if self.draws == 1:
            return loss
        outs = net.noisy_many(x, [None] * (self.draws - 1), self.batched)
        return (loss + sum(F.cross_entropy(o, y) for o in outs)) / self.draws


@register_method("temperature", config=TemperatureConfig)
@dataclass(frozen=True)
class Temperature(SimpleMethod):
    """``CE(z / T)`` under noise: the temperature part of OVF without its feedback term."""

    temperature: float = 4.0
    noisy: ClassVar[bool] = True

    @classmethod
    def from_options(cls, options: TemperatureConfig, context: MethodContext) -> Temperature:
        return cls(temperature=options.temperature or float(options.n + 1))

    def loss(self, net, x, y):
        return F.cross_entropy(net.noisy(x) / self.temperature, y)


@register_method("correctnet", config=CorrectNetConfig)
@dataclass(frozen=True)
class CorrectNet(SimpleMethod):
    """Noise injection plus CorrectNet's orthogonality regulariser (no compensation layers)."""

    lam: float = 5e-4
    shape: str = "matrix"
    noisy: ClassVar[bool] = True

    @classmethod
    def from_options(cls, options: CorrectNetConfig, context: MethodContext) -> CorrectNet:
        return cls(lam=options.penalty, shape=options.shape)

    def loss(self, net, x, y):
        return F.cross_entropy(net.noisy(x), y) + self.lam * orthogonality_penalty(net.mapped_weights(), self.shape)


@register_method("ovf", config=OVFConfig)
@dataclass(frozen=True)
class OVF(SimpleMethod):
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
    bn_stats: str = "backbone"
    noisy: ClassVar[bool] = True

    @classmethod
    def from_options(cls, options: OVFConfig, context: MethodContext) -> OVF:
        n = options.n
        beta = OVF_BETA.get(context.model_name or "", 1e-3) if options.beta is None else options.beta
        return cls(beta=beta, offsets=tuple(options.offsets or default_offsets(n)),
                   gammas=tuple(options.gammas or default_gammas(n)), feedback_grad=options.feedback_grad,
                   batched=context.batched, bn_stats=options.bn_stats)

    def loss(self, net, x, y):
        z = net.noisy(x)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.feedback_grad == "full"):
            outs = net.noisy_many(x, [net.sigma + o for o in self.offsets], self.batched, self.bn_stats == "all")
        return feedback_loss(z, outs, y, self.beta, self.gammas)


from nft_deploy.training.irs import IRS, IRSConfig  # noqa: E402 - registers irs after the others (--method order)


def make_method(config: TrainConfig, net: NoisyModel, sample_x: torch.Tensor, num_classes: int,
                model_name: str | None) -> Method:
    """The registered method ``config.method``, built from its options (``config.options()``).

    ``model_name`` is the built-in architecture (None for a user module): it picks IRS defaults.
    """
    spec = method_spec(config.method)
    return spec.cls.from_options(config.options(), MethodContext(config, net, sample_x, num_classes, model_name))


__all__ = ["METHODS", "CorrectNet", "CorrectNetConfig", "FeedbackConfig", "IRS", "IRSConfig", "Method",
           "MethodContext", "NoOptions", "NoiseInjection", "NoiseInjectionConfig", "OVF", "OVFConfig", "Plain",
           "SimpleMethod", "Temperature", "TemperatureConfig", "make_method", "register_method", "registered_methods",
           "unregister_method"]
