"""NFT training in PyTorch: the methods (plain, noise injection and its ablations, CorrectNet, OVF, IRS),
the trainer behind ``nft-deploy train`` and a torch Monte Carlo check over programmed chips."""

from __future__ import annotations

from nft_deploy.training.config import METHOD_NAMES, TrainConfig
from nft_deploy.training.crossbars import torch_plan
from nft_deploy.training.methods import METHODS, make_method
from nft_deploy.training.montecarlo import (
    TorchMonteCarloResult,
    chip_logits,
    chip_weights,
    model_plan,
    torch_monte_carlo,
)
from nft_deploy.training.noisy import NoisyModel, mapped_layers
from nft_deploy.training.trainer import EpochMetrics, TrainResult, evaluate, train

__all__ = [
    "EpochMetrics",
    "METHODS",
    "METHOD_NAMES",
    "NoisyModel",
    "TorchMonteCarloResult",
    "TrainConfig",
    "TrainResult",
    "chip_logits",
    "chip_weights",
    "evaluate",
    "make_method",
    "mapped_layers",
    "model_plan",
    "torch_monte_carlo",
    "torch_plan",
    "train",
]
