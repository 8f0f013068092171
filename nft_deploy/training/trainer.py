"""``train(config)``: one training run, from data and a model to a checkpoint and a JSON log.

Built-in models take ``in_channels``, ``num_classes`` and ``input_size`` from the data set (MNIST stays
28x28, so VGG-8's three pools leave a 3x3 map). Everything random is seeded from ``config.seed``: model
and head init (a forked global RNG), shuffling (numpy), training noise (one ``torch.Generator``) and the
per-epoch noisy evaluation (its own generator, so evaluating never shifts the training noise).

Under ``torchrun`` the same call trains with DistributedDataParallel (``nft_deploy.training.distributed``):
``batch_size`` is per rank, each rank trains on its shard of every epoch and draws its own noise, metrics
are all-reduced, and rank 0 alone writes the checkpoint and log. ``--device cuda`` keeps the model, the
batches and the noise generator on the GPU.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nft_deploy.checkpoint import atomic_write, save_checkpoint
from nft_deploy.data import Dataset, check_dataset, check_test_classes, load_data
from nft_deploy.errors import ConfigError, DataError
from nft_deploy.models import MODELS, build_model
from nft_deploy.training.config import TrainConfig
from nft_deploy.training.distributed import (
    Distributed,
    describe,
    distributed,
    has_unused_parameters,
    noise_seed,
)
from nft_deploy.training.epochs import EpochMetrics, clean_and_noisy_accuracy, fit
from nft_deploy.training.fit_checks import arch_entry, check_fit
from nft_deploy.training.methods import make_method
from nft_deploy.training.montecarlo import torch_monte_carlo
from nft_deploy.training.noisy import NoisyModel
from nft_deploy.training.progress import Progress
from nft_deploy.training.protocol import BestEpoch, apply_init, converged, init_weight, split_validation


@dataclass
class TrainResult:
    """A trained backbone (eval mode, no heads) and what training measured (the same on every rank)."""

    model: nn.Module
    history: list[EpochMetrics]
    metrics: dict[str, float]
    checkpoint: Path | None
    log: Path | None
    method: dict = field(default_factory=dict)
    rank: int = 0
    """This process's rank under torchrun (0 otherwise): only rank 0 should print."""
    world_size: int = 1


def train(config: TrainConfig, *, data: Dataset | None = None, model: nn.Module | None = None,
          on_epoch: Callable[[EpochMetrics], None] | None = None) -> TrainResult:
    """Train ``model`` (or the built-in ``config.model``) with ``config.method`` against the device profile.

    A user module works for every method (IRS needs ``config.irs_layers``). ``on_epoch`` is called
    with each epoch's metrics (the CLI prints them); under torchrun on rank 0 only.
    """
    config.validate()
    if model is None and config.model not in MODELS:
        build_model(config.model)  # raises the ConfigError listing the valid names
    with distributed(config.device, config.dist_backend, config.expect_world_size) as dist:
        return _train(config, dist, data, model, on_epoch)


def _train(config: TrainConfig, dist: Distributed, data: Dataset | None, model: nn.Module | None,
           on_epoch) -> TrainResult:
    profile = config.resolved_profile()
    device = dist.device
    if data is None:
        where = config.data
        data = load_data(config.data, limit_train=config.limit_train, limit_test=config.limit_test,
                         image_size=config.image_size, normalize=config.normalize)
    else:
        where = data.name
        check_dataset(data, where)
    if isinstance(data.x_train, dict):
        raise DataError(f"{where}: named inputs ({', '.join(data.x_train)}) are for evaluating models with several "
                        "inputs; training takes one array x (a .npz with x, y)")
    check_test_classes(data, where, "; add training samples of those classes" +
                       (" or raise --limit-train" if config.limit_train else ""))
    arch, model_name = arch_entry(config, data, model, where)
    data, val = _validation_split(config, data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if model is None:
            model = build_model(model_name, **arch["kwargs"])
        apply_init(model, config.init)
        model.to(device).train()
        gen = torch.Generator(device=device).manual_seed(noise_seed(config.seed, dist.rank))
        sample = torch.as_tensor(data.x_train[:2], device=device)
        check_fit(config, model, sample, data, where, dist.world_size, user=model_name is None)
        net = NoisyModel(model, profile, gen, sample)
        method = make_method(config, net, sample, data.num_classes, model_name)
        for extra in method.parameters():
            if extra.ndim > 1:  # IRS heads' weights, as the reference initialises them
                init_weight(extra.data, config.init)
        if method.noisy and not net.layers:
            method.close()
            raise ConfigError(f"--profile {net.profile.name}: maps no layer of this model, so --method {method.name} "
                              "would train without device noise; check mapping.op_types and digital_layers "
                              "(`nft-deploy plan` lists every layer and why), or use --method plain")
        find_unused = dist.enabled and has_unused_parameters(model, sample)
    try:
        history, best = fit(config, net, method, data, dist, on_epoch if dist.is_main else None, find_unused, val)
    finally:
        method.close()
    if best is not None:
        best.restore(model)
    model.eval()
    method_info = {"name": method.name, **method.params()}

    def finish():
        metrics = _final_metrics(history, best)
        if config.mc_chips:
            metrics.update(_monte_carlo(config, model, profile, data))
            metrics["converged"] = float(converged(metrics["loss"], data.num_classes, metrics["mc_mean"]))
        ckpt = None
        if config.output is not None:
            ckpt = save_checkpoint(config.output, model=model, arch=arch, profile=profile.to_dict(),
                                   method=method_info, metrics=metrics, data=data.name, input_shape=data.input_shape)
        info = {**describe(dist), "global_batch": config.batch_size * dist.world_size}
        log = _write_log(config, profile.to_dict(), method_info, history, metrics, data, info)
        return metrics, ckpt, log

    metrics, ckpt, log = dist.on_main(finish)
    return TrainResult(model, history, metrics, ckpt, log, method_info, dist.rank, dist.world_size)


def _monte_carlo(config: TrainConfig, model: nn.Module, profile, data: Dataset) -> dict[str, float]:
    with Progress(enabled=config.progress) as bar:
        task = bar.task("Monte Carlo chips", config.mc_chips)
        mc = torch_monte_carlo(model, profile, data.x_test, data.y_test, chips=config.mc_chips, seed=config.seed,
                               progress=lambda done, total: bar.advance(task))
    return {"mc_mean": mc.mean, "mc_std": mc.std, "mc_chips": float(mc.chips)}


def _final_metrics(history: list[EpochMetrics], best: BestEpoch | None = None) -> dict[str, float]:
    """The final epoch's numbers (the selected epoch's with ``--select best``; ``loss`` stays the last epoch's:
    convergence is judged on where training ended)."""
    kept = history[best.epoch - 1] if best is not None and best.epoch else history[-1]
    metrics = {"loss": history[-1].loss, "clean_acc": kept.clean_acc, "noisy_acc": kept.noisy_acc,
               "epochs": float(len(history)), "seconds_per_epoch": float(np.mean([h.seconds for h in history])),
               "step_ms": float(np.mean([h.step_ms for h in history]))}
    if best is not None:
        metrics.update(selected_epoch=float(best.epoch), val_noisy_acc=best.accuracy)
    return metrics


def _validation_split(config: TrainConfig, data: Dataset) -> tuple[Dataset, Dataset | None]:
    """(training data, validation split) for ``--select best``, carved from the training split only."""
    if config.select != "best":
        return data, None
    fit_idx, val_idx = split_validation(len(data.y_train), config.val_fraction, config.seed)
    x, y = data.x_train, data.y_train
    val = Dataset(data.name + ":val", x[fit_idx[:0]], y[fit_idx[:0]], x[val_idx], y[val_idx], data.num_classes)
    kept = Dataset(data.name, x[fit_idx], y[fit_idx], data.x_test, data.y_test, data.num_classes, data.held_out,
                   {**data.preprocessing, "validation": {"fraction": config.val_fraction, "samples": len(val_idx)}})
    return kept, val


def _write_log(config, profile: dict, method: dict, history, metrics, data: Dataset,
               distributed_info: dict | None = None) -> Path | None:
    path = config.log_path()
    if path is None:
        return None
    doc = {"config": config.to_dict(), "profile": profile, "method": method, "data": data.name,
           "preprocessing": data.preprocessing,
           "history": [asdict(h) for h in history], "metrics": metrics,
           "distributed": distributed_info or {"world_size": 1}, "python": sys.version.split()[0],
           "torch": torch.__version__}
    text = json.dumps(doc, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


__all__ = ["EpochMetrics", "TrainResult", "clean_and_noisy_accuracy", "train"]
