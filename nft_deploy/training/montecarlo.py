"""Torch Monte Carlo: accuracy of a torch model over programmed chips, before any export exists.

Chip ``i`` of layer ``L`` is exactly ``nft_deploy.chips.draw_chip(layers, profile, weights, seed, i)[L]``
applied with ``NoiseModel.for_layer(profile, L).apply_chip_torch``: the same chip the ONNX Runtime
evaluator feeds to the exported graph, fixed across the whole test set. This check models weights only:
quantization, programming variation and stuck-at faults. It draws no read noise (the evaluator's read
noise is redrawn per inference) and does not quantize activations (profile ``io``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from nft_deploy.chips import CHIP_INPUT_PREFIX, STUCK_INPUT_PREFIX, DeployedLayer, draw_chip
from nft_deploy.errors import EvaluationError
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import DeviceProfile, load_profile
from nft_deploy.training.noisy import mapped_layers


def torch_layers(model: nn.Module, profile: DeviceProfile) -> list[DeployedLayer]:
    """The crossbar-mapped layers of a torch model, described as the deployed graph describes them."""
    out = []
    for lay in mapped_layers(model, profile):
        nm = NoiseModel.for_layer(profile, lay.name)
        out.append(DeployedLayer(
            name=lay.name, weight=lay.weight, op_type=lay.op_type, shape=tuple(lay.module.weight.shape),
            out_axis=lay.out_axis,
            chip_input=f"{CHIP_INPUT_PREFIX}{lay.name}" if nm.profile.programming.sigma > 0 else None,
            stuck_input=f"{STUCK_INPUT_PREFIX}{lay.name}" if nm.has_stuck_at else None,
        ))
    return out


@dataclass(frozen=True)
class TorchMonteCarloResult:
    """Per-chip accuracies of one model on one data set."""

    accuracies: np.ndarray
    """Top-1 accuracy (fraction) of each chip, in chip order."""
    seed: int
    sigma: float
    """Programming sigma used (profile unit)."""
    logits: np.ndarray | None = field(default=None, repr=False)
    """(chips, samples, classes) float32 when ``keep_logits=True``, else None."""

    @property
    def chips(self) -> int:
        return len(self.accuracies)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Std over chips, ddof=1 (0 for a single chip)."""
        return float(np.std(self.accuracies, ddof=1)) if self.chips > 1 else 0.0

    def to_dict(self) -> dict:
        return {"chips": self.chips, "seed": self.seed, "sigma": self.sigma, "mean": self.mean, "std": self.std,
                "accuracies": [float(a) for a in self.accuracies]}


def chip_weights(model: nn.Module, profile: DeviceProfile, layers: list[DeployedLayer], seed: int,
                 chip: int) -> dict[str, torch.Tensor]:
    """Every mapped weight as programmed on chip ``chip`` (torch, the model's dtype and device)."""
    params = dict(model.named_parameters())
    np_weights = {lay.weight: params[lay.weight].detach().cpu().double().numpy() for lay in layers}
    draws = draw_chip(layers, profile, np_weights, seed, chip)
    return {lay.weight: NoiseModel.for_layer(profile, lay.name).apply_chip_torch(
        params[lay.weight].detach(), draws[lay.name], lay.out_axis) for lay in layers}


@torch.no_grad()
def chip_logits(model: nn.Module, profile: DeviceProfile | str, x, *, chip: int, seed: int = 0,
                batch_size: int = 512, sigma: float | None = None) -> np.ndarray:
    """Logits (samples, classes) of one chip: for parity tests against the ONNX evaluator."""
    prof = _profile(profile, sigma)
    model.eval()
    weights = chip_weights(model, prof, torch_layers(model, prof), seed, chip)
    return _logits(model, weights, _tensor(x, model), batch_size)


@torch.no_grad()
def torch_monte_carlo(model: nn.Module, profile: DeviceProfile | str, x, y, *, chips: int = 100, seed: int = 0,
                      batch_size: int = 512, sigma: float | None = None, keep_logits: bool = False,
                      progress=None) -> TorchMonteCarloResult:
    """Accuracy over ``chips`` programmed chips (noise fixed per chip across all of ``x``).

    ``sigma`` overrides the profile's programming sigma. ``progress`` is an optional callable
    ``progress(done, total)``.
    """
    if chips < 1:
        raise EvaluationError(f"--mc-chips: must be >= 1, got {chips}")
    if len(x) != len(y) or len(x) == 0:
        raise EvaluationError(f"Monte Carlo data: {len(x)} samples and {len(y)} labels; need the same, > 0")
    prof = _profile(profile, sigma)
    model.eval()
    layers = torch_layers(model, prof)
    xt, yt = _tensor(x, model), torch.as_tensor(np.asarray(y)).to(_device(model))
    accs, all_logits = np.empty(chips), []
    for i in range(chips):
        logits = _logits(model, chip_weights(model, prof, layers, seed, i), xt, batch_size)
        accs[i] = int((torch.as_tensor(logits).argmax(1).to(yt.device) == yt).sum()) / len(yt)
        if keep_logits:
            all_logits.append(logits)
        if progress is not None:
            progress(i + 1, chips)
    return TorchMonteCarloResult(accs, seed, prof.programming.sigma, np.stack(all_logits) if keep_logits else None)


def _logits(model: nn.Module, weights: dict[str, torch.Tensor], x: torch.Tensor, batch_size: int) -> np.ndarray:
    outs = [functional_call(model, weights, (x[i: i + batch_size],)) for i in range(0, len(x), batch_size)]
    return torch.cat(outs).float().cpu().numpy()


def _profile(profile, sigma):
    p = load_profile(profile)
    return p if sigma is None else p.with_sigma(sigma)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _tensor(x, model: nn.Module) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32).to(_device(model))


__all__ = ["TorchMonteCarloResult", "chip_logits", "chip_weights", "torch_layers", "torch_monte_carlo"]
