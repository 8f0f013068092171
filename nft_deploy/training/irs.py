"""IRS (Intermediate Representation Snapshot): training-only heads on intermediate layers.

Forward hooks on the named modules of any model hand each activation, unchanged, to a snapshot head
(AdaptiveAvgPool -> Linear(hidden) -> ReLU -> Linear(classes)) whose own weights are noisy too. The heads
live in this object, never in the backbone: the saved state dict and the exported graph are the
backbone alone, and ``close()`` removes the hooks.

Default layers and pool sizes follow the NFT reference code (Qin et al., arXiv 2305.14561; VGG-8: block1 6x6, pool1 4x4, pool2 3x3; ResNet-18: stem,
layer1 6x6, layer2 4x4, layer3 3x3, the stem's 6x6 is our choice); LeNet-5 (pool1 4x4, pool2 2x2) and
user modules (4x4 per head) are ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import nn

from nft_deploy.errors import ConfigError
from nft_deploy.models import IRS_LAYERS
from nft_deploy.profiles import DeviceProfile
from nft_deploy.training.config import option, register_method
from nft_deploy.training.losses import FeedbackConfig, default_gammas, feedback_loss
from nft_deploy.training.noisy import NoisyModel

IRS_POOL = {"lenet5": (4, 2), "vgg8": (6, 4, 3), "resnet18": (6, 6, 4, 3)}
IRS_BETA = {"lenet5": 1e-2, "vgg8": 1e-2, "resnet18": 1e-1}  # the reference code's MNIST values; LeNet-5 is ours
DEFAULT_POOL, DEFAULT_BETA = 4, 1e-2
HEAD_STATES = ("profile", "independent")


class SnapshotHead(nn.Module):
    """AdaptiveAvgPool -> Linear(hidden) -> ReLU -> Linear(classes) on one activation."""

    def __init__(self, shape: tuple[int, ...], pool: int, hidden: int, num_classes: int):
        super().__init__()
        spatial = len(shape) - 1  # shape excludes the batch: (C,), (C, L) or (C, H, W)
        self.pool = {0: nn.Identity(), 1: nn.AdaptiveAvgPool1d(pool), 2: nn.AdaptiveAvgPool2d(pool)}.get(spatial)
        if self.pool is None:
            raise ConfigError(f"--irs-layers: activation of shape {tuple(shape)} is not supported (1-3 dims per sample)")
        features = shape[0] * pool**spatial
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = torch.flatten(self.pool(h), 1)
        return self.fc2(torch.relu(self.fc1(h)))


@dataclass(frozen=True)
class IRSConfig(FeedbackConfig):
    """irs options (beta and gammas shared with ovf)."""

    layers: tuple[str, ...] | None = option(None, "IRS: module paths, comma-separated, shallowest first.",
                                            flat="irs_layers")
    """Module paths whose outputs feed snapshot heads, shallowest first; None: built-in defaults."""
    pool: tuple[int, ...] | None = option(None, "IRS: pool size per head, comma-separated.", flat="irs_pool")
    """Adaptive-pool output side per head; None: built-in defaults (4 for a user model)."""
    hidden: int = option(512, flat="irs_hidden", flag=False, check="positive_int")
    """Hidden width of each head (``TrainConfig(irs_hidden=...)``; no CLI flag)."""
    head_sigma: float | None = option(None, "IRS: programming sigma of the heads' own weights (default: the "
                                      "backbone's).", flat="irs_head_sigma", check="nonneg")
    """Programming sigma of the heads (profile unit, ``with_sigma``); None: the backbone's sigma."""
    head_state: str = option("profile", "IRS: heads' noise with the profile's state dependence (profile) or "
                             "state-independent (independent: the NFT reference code).", flat="irs_head_state",
                             choices=HEAD_STATES)
    """profile: the heads' cells vary as the profile says; independent: without its state-dependent factor
    (s = 1), as the reference code perturbs its heads whatever the backbone's device."""


@register_method("irs", config=IRSConfig)
@dataclass(eq=False)
class IRS:
    """Snapshot heads attached by forward hooks; feedback loss ``CE((z - beta sum gamma_n h_n)/(N+1))``."""

    layers: tuple[str, ...]
    pools: tuple[int, ...]
    beta: float
    gammas: tuple[float, ...]
    heads: nn.ModuleList
    hidden: int = 512
    noisy: ClassVar[bool] = True
    _head_nets: list[NoisyModel] = field(default_factory=list, repr=False)
    _handles: list = field(default_factory=list, repr=False)
    _outputs: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    _active: bool = False

    @classmethod
    def from_options(cls, options: IRSConfig, context) -> IRS:
        """``from_config`` with the ``MethodContext`` the registry passes."""
        return cls.from_config(options, context.net, context.sample_x, context.num_classes, context.model_name)

    @classmethod
    def from_config(cls, config, net: NoisyModel, sample_x: torch.Tensor, num_classes: int,
                    model_name: str | None) -> IRS:
        """Heads sized from one probe forward of ``sample_x``, hooked onto ``net.model``.

        ``config``: an ``IRSConfig``, or anything with its flat names (a ``TrainConfig``: irs_layers, ...).
        """
        if not isinstance(config, IRSConfig):
            config = IRSConfig(beta=config.beta, gammas=config.gammas, layers=config.irs_layers, pool=config.irs_pool,
                               hidden=config.irs_hidden, head_sigma=config.irs_head_sigma,
                               head_state=config.irs_head_state)
        layers = config.layers or IRS_LAYERS.get(model_name or "")
        modules = dict(net.model.named_modules())
        if not layers:
            raise ConfigError("--irs-layers: required for a model that is not built in; module paths available: "
                              + _names(modules))
        for lay in layers:
            if lay not in modules or lay == "":
                raise ConfigError(f"--irs-layers: no module {lay!r} in the model; available: {_names(modules)}")
        n = len(layers)
        pools = tuple(config.pool or IRS_POOL.get(model_name or "", (DEFAULT_POOL,) * n))
        if len(pools) != n:
            raise ConfigError(f"--irs-pool: {len(pools)} pool sizes for {n} IRS layers; give one per layer")
        gammas = tuple(config.gammas or default_gammas(n))
        if len(gammas) != n:
            raise ConfigError(f"--gammas: {len(gammas)} values for {n} IRS layers; give one per layer")
        beta = config.beta if config.beta is not None else IRS_BETA.get(model_name or "", DEFAULT_BETA)
        shapes = _probe_shapes(net.model, [modules[lay] for lay in layers], sample_x)
        heads = nn.ModuleList(SnapshotHead(s, p, config.hidden, num_classes) for s, p in zip(shapes, pools, strict=True))
        heads.to(sample_x.device)
        irs = cls(tuple(layers), pools, beta, gammas, heads, config.hidden)
        profile = head_profile(net.profile, config.head_sigma, config.head_state)
        irs._head_nets = [NoisyModel(h, profile, net.generator, torch.zeros((2, *s), device=sample_x.device))
                          for h, s in zip(heads, shapes, strict=True)]
        irs._handles = [modules[lay].register_forward_hook(irs._hook(i)) for i, lay in enumerate(layers)]
        return irs

    def _hook(self, i: int):
        def hook(module, inputs, output):
            if self._active:
                self._outputs[i] = self._head_nets[i].noisy(output)
            return None  # the backbone activation passes on unchanged

        return hook

    def snapshots(self, net: NoisyModel, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Backbone logits under one noise draw and the heads' outputs, shallowest first."""
        self._outputs, self._active = {}, True
        try:
            z = net.noisy(x)
        finally:
            self._active = False
        missing = [self.layers[i] for i in range(len(self.layers)) if i not in self._outputs]
        if missing:
            raise ConfigError(f"--irs-layers: module {missing[0]!r} is never called in the model's forward")
        return z, [self._outputs[i] for i in range(len(self.layers))]

    def loss(self, net, x, y):
        z, h = self.snapshots(net, x)
        return feedback_loss(z, h, y, self.beta, self.gammas)

    def params(self) -> dict:
        head = self._head_nets[0].profile if self._head_nets else None
        return {"beta": self.beta, "gammas": list(self.gammas), "layers": list(self.layers),
                "pools": list(self.pools), "hidden": self.hidden,
                "head_sigma": head.programming.sigma if head else None,
                "head_state_dependent": bool(head and head.programming.state_dependent)}

    def parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def close(self) -> None:
        """Detach the heads: remove every hook from the backbone."""
        for h in self._handles:
            h.remove()
        self._handles = []


def head_profile(profile: DeviceProfile, sigma: float | None, state: str) -> DeviceProfile:
    """The device the heads' own weights see: ``profile`` at ``sigma`` (None: as it is), without its
    state-dependent factor when ``state`` is ``independent`` (also in per-layer overrides)."""
    p = profile if sigma is None else profile.with_sigma(sigma)
    if state != "independent":
        return p
    plain = [replace(o, programming=replace(o.programming, state_dependent=None)) if o.programming else o
             for o in p.mapping.overrides]
    return replace(p, programming=replace(p.programming, state_dependent=None),
                   mapping=replace(p.mapping, overrides=tuple(plain)))


def _probe_shapes(model: nn.Module, modules: list[nn.Module], x: torch.Tensor) -> list[tuple[int, ...]]:
    shapes: dict[int, tuple[int, ...]] = {}

    def recorder(k):
        def hook(module, inputs, output):
            shapes.setdefault(k, tuple(output.shape[1:]))  # returns None: the output is untouched

        return hook

    handles = [m.register_forward_hook(recorder(k)) for k, m in enumerate(modules)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x[:2])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    for k, m in enumerate(modules):
        if k not in shapes:
            raise ConfigError(f"--irs-layers: module {type(m).__name__} #{k + 1} is never called in the model's forward")
    return [shapes[k] for k in range(len(modules))]


def _names(modules: dict) -> str:
    names = [n for n in modules if n]
    return ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")


__all__ = ["HEAD_STATES", "IRS", "IRSConfig", "head_profile", "IRS_BETA", "IRS_POOL", "SnapshotHead"]
