"""The pieces of a training protocol that decide whether a noisy run converges, each selectable.

- ``apply_init``: PyTorch's default init or the NFT reference code's ``kaiming_normal_(mode="fan_out")``
  on every convolution and linear weight. Under the reference init the programming noise at sigma 0.35 is
  1.06-1.46x a layer's rms weight, against 0.47x under the default (Gaussian weights have a larger
  max|W|/rms, and the noise scales with max|W|): the init alone can decide whether noise injection trains.
- ``warmup_sigma``: the training sigma ramps linearly from 0 over the first E epochs (per step), a standard
  remedy for training that diverges under heavy noise.
- ``split_validation``: a validation split carved from the training data (never the test set), for
  choosing the best epoch honestly.
- ``converged`` and ``wilson_interval``: convergence defined where it can be seen, and the interval of a
  fraction of converged seeds.
- ``Diagnostics`` (noise / rms weight and gradient norm per layer and epoch, a warning when the noise
  swamps a layer) and ``BestEpoch`` (the weights of the best validation epoch).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats
from torch import nn

from nft_deploy.device_plan import LayerPlan
from nft_deploy.training.config import INITS, SELECTIONS
from nft_deploy.training.crossbars import graph_layout

CONVERGED_LOSS_MARGIN = 0.5
"""A converged run's final training loss is at least this many nats below ln(C), the loss of a uniform guess."""
CONVERGED_ACCURACY_FACTOR = 2.0
"""A converged run's deployed Monte Carlo accuracy is at least this many times chance (1/C)."""


def apply_init(model: nn.Module, init: str) -> nn.Module:
    """``default``: leave PyTorch's init; ``kaiming``: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``
    on the weight of every Conv and Linear module (biases untouched), from torch's global RNG (the trainer
    seeds it). Returns ``model``."""
    if init not in INITS:
        raise ValueError(f"init {init!r}: choose one of {', '.join(INITS)}")
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            init_weight(m.weight, init)
    return model


def init_weight(weight: torch.Tensor, init: str) -> None:
    """``apply_init`` on one weight (a method's own parameters, such as IRS heads, that no module lists)."""
    if init == "kaiming":
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")


def warmup_sigma(sigma: float, progress: float, warmup_epochs: float) -> float:
    """The training sigma after ``progress`` epochs (fractional: epoch + step / steps): ``sigma`` ramped
    linearly from 0 over ``warmup_epochs`` (0: no warm-up), then constant."""
    if warmup_epochs <= 0:
        return sigma
    return sigma * min(1.0, max(0.0, progress) / warmup_epochs)


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of ``n`` training samples: a seeded permutation's last
    ``round(fraction * n)`` (at least one) are the validation split; both sorted, disjoint, covering all."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    k = min(n - 1, max(1, round(fraction * n)))
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5A1])).permutation(n)
    return np.sort(order[: n - k]), np.sort(order[n - k:])


def converged(final_loss: float, num_classes: int, deployed_accuracy: float) -> bool:
    """A run converged when its final training loss is clearly below a uniform guess's, ln(C) minus
    ``CONVERGED_LOSS_MARGIN``, and its deployed Monte Carlo accuracy is at least ``CONVERGED_ACCURACY_FACTOR``
    times chance: both see the failure mode (a run stuck at ln(C) and chance accuracy on the chip)."""
    return (final_loss <= math.log(num_classes) - CONVERGED_LOSS_MARGIN
            and deployed_accuracy >= CONVERGED_ACCURACY_FACTOR / num_classes)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n at ``level`` (well behaved at 0 and n, unlike Wald's)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def noise_to_rms(lay: LayerPlan, weight: torch.Tensor) -> float:
    """A mapped layer's programming-noise std relative to its rms weight (``LayerPlan.noise_to_rms``, on the
    weight in the graph's layout): above 1 the noise swamps the weights."""
    with torch.no_grad():
        return lay.noise_to_rms(graph_layout(lay, weight.detach()))


class Diagnostics:
    """Per epoch and mapped layer: programming noise / rms weight and the mean gradient norm over the
    epoch's steps (the training log's ``layers``); ``warnings`` lists each layer once, the first epoch its
    noise exceeds its rms weight."""

    def __init__(self, net) -> None:
        self.net, self.sums, self.steps, self.warned = net, {}, 0, set()

    def step(self) -> None:
        """After ``backward``: add each mapped weight's gradient norm."""
        params = dict(self.net.model.named_parameters())
        for lay in self.net.layers:
            g = params[lay.weight].grad
            self.sums[lay.name] = self.sums.get(lay.name, 0.0) + (float(g.norm()) if g is not None else 0.0)
        self.steps += 1

    def epoch(self) -> tuple[dict[str, dict[str, float]], list[str]]:
        """(per layer {noise_to_rms, grad_norm}, the new warnings) for the epoch that ended; resets the sums."""
        params = dict(self.net.model.named_parameters())
        rows, warnings = {}, []
        for lay in self.net.layers:
            ratio = noise_to_rms(lay, params[lay.weight])
            rows[lay.name] = {"noise_to_rms": ratio, "grad_norm": self.sums.get(lay.name, 0.0) / max(1, self.steps)}
            if ratio > 1 and lay.name not in self.warned:
                self.warned.add(lay.name)
                warnings.append(f"layer {lay.name}: programming noise is {ratio:.2f}x its rms weight at sigma "
                                f"{self.net.sigma:g}; noisy training may not converge (try --sigma-warmup, "
                                "--init default, or a lower --sigma)")
        self.sums, self.steps = {}, 0
        return rows, warnings


class BestEpoch:
    """Keeps the weights of the epoch with the best noisy accuracy on the validation split (``--select best``)."""

    def __init__(self) -> None:
        self.epoch, self.accuracy, self.state = 0, -math.inf, None

    def offer(self, epoch: int, accuracy: float, model: nn.Module) -> None:
        if accuracy > self.accuracy:  # ties keep the earlier epoch
            self.epoch, self.accuracy = epoch, accuracy
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model: nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


__all__ = ["CONVERGED_ACCURACY_FACTOR", "CONVERGED_LOSS_MARGIN", "INITS", "SELECTIONS", "BestEpoch", "Diagnostics",
           "apply_init", "converged", "init_weight", "noise_to_rms", "split_validation", "warmup_sigma",
           "wilson_interval"]
