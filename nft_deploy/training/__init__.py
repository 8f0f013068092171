"""NFT training in PyTorch: the methods (plain, noise injection and its ablations, CorrectNet, OVF, IRS),
the trainer behind ``nft-deploy train`` and a torch Monte Carlo check over programmed chips.

A new method: a dataclass method class decorated with ``@register_method("name", config=NameConfig)``,
its options ``option()`` fields of ``NameConfig``; ``METHOD_NAMES`` and ``METHODS`` are read-only views of
that registry."""

from __future__ import annotations

from typing import Any

from nft_deploy.training import config as _config
from nft_deploy.training.config import (
    METHODS,
    NoOptions,
    TrainConfig,
    option,
    register_method,
    registered_methods,
    unregister_method,
)
from nft_deploy.training.crossbars import torch_plan
from nft_deploy.training.methods import MethodContext, SimpleMethod, make_method
from nft_deploy.training.montecarlo import (
    TorchMonteCarloResult,
    chip_weights,
    model_plan,
    torch_chip_logits,
    torch_monte_carlo,
)
from nft_deploy.training.noisy import NoisyModel, mapped_layers
from nft_deploy.training.trainer import EpochMetrics, TrainResult, clean_and_noisy_accuracy, train

__all__ = [
    "EpochMetrics",
    "METHODS",
    "METHOD_NAMES",
    "MethodContext",
    "NoOptions",
    "NoisyModel",
    "SimpleMethod",
    "TorchMonteCarloResult",
    "TrainConfig",
    "TrainResult",
    "chip_weights",
    "clean_and_noisy_accuracy",
    "make_method",
    "mapped_layers",
    "model_plan",
    "option",
    "register_method",
    "registered_methods",
    "torch_chip_logits",
    "torch_monte_carlo",
    "torch_plan",
    "train",
    "unregister_method",
]


def __getattr__(name: str) -> Any:
    if name == "METHOD_NAMES":  # derived from the registry on every read
        return _config.METHOD_NAMES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
