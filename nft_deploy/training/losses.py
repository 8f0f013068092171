"""The loss formulas of the NFT methods, as pure functions of logits (pinned by hand-computed tests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nft_deploy.training.config import option


@dataclass(frozen=True)
class FeedbackConfig:
    """Options of the negative-feedback methods (OVF, IRS)."""

    beta: float | None = option(None, "Feedback strength (default: the NFT reference code's value per model).")
    """Feedback strength; None: the NFT reference code's MNIST value per built-in model (``OVF_BETA``,
    ``IRS_BETA``; 1e-3 for ovf, 1e-2 for irs on another model)."""
    gammas: tuple[float, ...] | None = option(None, "OVF/IRS feedback weights, comma-separated (default 10^-(n-1)).")
    """Feedback weights, one per feedback output; None: 10^-(n-1)."""



def default_gammas(n: int) -> tuple[float, ...]:
    """gamma_n = 10^-(n-1): the first (most perturbed / shallowest) feedback output weighs most."""
    return tuple(10.0 ** -i for i in range(n))


def default_offsets(n: int) -> tuple[float, ...]:
    """OVF sigma offsets 0.05 * (N - n + 1): 0.15, 0.10, 0.05 for the reference N = 3."""
    return tuple(round(0.05 * (n - i), 10) for i in range(n))


def feedback_loss(z: torch.Tensor, feedback: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor,
                  beta: float, gammas: Sequence[float]) -> torch.Tensor:
    """NFT's negative-feedback loss, ``CE((z - beta * sum_n gamma_n o_n) / (N + 1), y)``.

    ``z`` (batch, classes) is the backbone output; ``feedback`` holds the N outputs ``o_n`` (OVF's extra
    forwards or IRS heads). The ``/(N + 1)`` acts as a softmax temperature (see the ``temperature``
    ablation).
    """
    outs = list(feedback)
    if len(outs) != len(gammas):
        raise ValueError(f"{len(outs)} feedback outputs but {len(gammas)} gammas")
    fb = sum(g * o for g, o in zip(gammas, outs, strict=True))
    return F.cross_entropy((z - beta * fb) / (len(outs) + 1), y)


PENALTY_SHAPES = ("matrix", "kernel")


def orthogonality_penalty(weights: Sequence[torch.Tensor], shape: str = "matrix") -> torch.Tensor:
    """CorrectNet's regulariser ``sum ||W^T W - I||_F^2``. ``matrix``: each weight reshaped to (out, fan_in);
    ``kernel`` (the NFT reference code, ``w.view(-1, kh, kw)``): every kh x kw kernel of a convolution is
    its own W, other weights stay matrices."""
    total = torch.zeros(())
    for w in weights:
        m = w.reshape(-1, *w.shape[-2:]) if shape == "kernel" and w.ndim == 4 else w.reshape(1, w.shape[0], -1)
        gram = m.transpose(1, 2) @ m
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        total = total.to(gram.device) + ((gram - eye) ** 2).sum()
    return total


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy (fraction)."""
    return float((logits.argmax(1) == y).float().mean())


__all__ = ["PENALTY_SHAPES", "FeedbackConfig", "accuracy", "default_gammas", "default_offsets", "feedback_loss", "orthogonality_penalty"]
