"""Torch Monte Carlo: accuracy of a torch model over programmed chips, before any export exists.

The model's device plan (``training.crossbars.torch_plan``) names the mapped layers; chip ``i`` of layer ``L`` is
exactly ``nft_deploy.chips.draw_chip(plan.mapped, weights, seed, i)[L]`` applied with the layer's
``NoiseModel.apply_chip_torch``: the same chip the ONNX Runtime evaluator feeds to the exported graph,
fixed across the whole test set, with the plan's DAC/ADC around every mapped call. It draws no read
noise (the evaluator's read noise comes from seeded graph nodes, redrawn per inference).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from nft_deploy.chips import draw_chip
from nft_deploy.device_plan import DevicePlan
from nft_deploy.drift import read_at
from nft_deploy.errors import EvaluationError
from nft_deploy.noise import ChipDraw
from nft_deploy.profiles import DeviceProfile, load_profile
from nft_deploy.training.crossbars import graph_layout, in_graph_layout, on_device, torch_plan


def model_plan(model: nn.Module, profile: DeviceProfile | str, x, sigma: float | None = None) -> DevicePlan:
    """The device plan of ``model`` at ``sigma``, probed with the first samples of ``x``."""
    return torch_plan(model, load_profile(profile), _tensor(x[:2], model), sigma)


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


def chip_weights(model: nn.Module, plan: DevicePlan, seed: int, chip: int | None,
                 seconds: float | None = None) -> dict[str, torch.Tensor]:
    """Every mapped weight as programmed on chip ``chip`` (torch, the model's dtype and device); ``chip``
    None gives the clean device: quantized weights, no variation, no faults. A drifting layer is read
    ``seconds`` after programming (``drift.read_at``, compensation included; None: at t0)."""
    params = dict(model.named_parameters())
    layers = plan.mapped
    if chip is None:
        draws = {lay.name: ChipDraw(np.zeros(lay.shape)) for lay in layers}
    else:
        np_weights = {lay.weight: graph_layout(lay, params[lay.weight].detach().cpu().double().numpy())
                      for lay in layers if lay.noise.has_stuck_at or lay.drift_input}
        draws = draw_chip(layers, np_weights, seed, chip)

    def programmed(lay, w):
        if lay.drift_input:
            return read_at(lay.noise, w, draws[lay.name], lay.out_axis, seconds or 0.0)[0]
        return lay.noise.apply_chip_torch(w, draws[lay.name], lay.out_axis)

    return {lay.weight: in_graph_layout(lay, params[lay.weight].detach(), lambda w, lay=lay: programmed(lay, w))
            for lay in layers}


@torch.no_grad()
def torch_chip_logits(model: nn.Module, profile: DeviceProfile | str, x, *, chip: int | None, seed: int = 0,
                      batch_size: int = 512, sigma: float | None = None, seconds: float | None = None) -> np.ndarray:
    """Logits (samples, classes) of one chip (None: the clean device) read ``seconds`` after programming
    (drift; None: at t0): parity tests against ONNX Runtime."""
    model.eval()
    plan = model_plan(model, profile, x, sigma)
    return plan_logits(model, plan, chip_weights(model, plan, seed, chip, seconds), _tensor(x, model), batch_size)


@torch.no_grad()
def torch_monte_carlo(model: nn.Module, profile: DeviceProfile | str, x, y, *, chips: int = 100, seed: int = 0,
                      batch_size: int = 512, sigma: float | None = None, keep_logits: bool = False,
                      progress=None) -> TorchMonteCarloResult:
    """Accuracy over ``chips`` programmed chips (noise fixed per chip across all of ``x``).

    ``sigma`` evaluates at that programming sigma (overrides keep their ratio). ``progress`` is an
    optional callable ``progress(done, total)``.
    """
    if chips < 1:
        raise EvaluationError(f"--mc-chips: must be >= 1, got {chips}")
    if len(x) != len(y) or len(x) == 0:
        raise EvaluationError(f"Monte Carlo data: {len(x)} samples and {len(y)} labels; need the same, > 0")
    model.eval()
    plan = model_plan(model, profile, x, sigma)
    xt, yt = _tensor(x, model), torch.as_tensor(np.asarray(y)).to(_device(model))
    accs, all_logits = np.empty(chips), []
    for i in range(chips):
        logits = plan_logits(model, plan, chip_weights(model, plan, seed, i), xt, batch_size)
        accs[i] = int((torch.as_tensor(logits).argmax(1).to(yt.device) == yt).sum()) / len(yt)
        if keep_logits:
            all_logits.append(logits)
        if progress is not None:
            progress(i + 1, chips)
    return TorchMonteCarloResult(accs, seed, plan.sigma, np.stack(all_logits) if keep_logits else None)


def plan_logits(model: nn.Module, plan: DevicePlan, weights: dict[str, torch.Tensor], x: torch.Tensor,
                batch_size: int) -> np.ndarray:
    """Logits of ``x`` on the device: ``weights`` in place of the mapped weights, the plan's converters on."""
    outs = [on_device(model, plan, weights, x[i: i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(outs).float().cpu().numpy()


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _tensor(x, model: nn.Module) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32).to(_device(model))


__all__ = ["TorchMonteCarloResult", "torch_chip_logits", "chip_weights", "model_plan", "plan_logits", "torch_monte_carlo"]
