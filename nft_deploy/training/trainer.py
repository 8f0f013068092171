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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nft_deploy.checkpoint import atomic_write, save_checkpoint
from nft_deploy.data import Dataset, batches, check_dataset, check_test_classes, load_data
from nft_deploy.errors import ConfigError, DataError
from nft_deploy.models import MODELS, build_model
from nft_deploy.training.config import TrainConfig
from nft_deploy.training.crossbars import on_device
from nft_deploy.training.distributed import (
    Distributed,
    describe,
    distributed,
    has_unused_parameters,
    noise_seed,
)
from nft_deploy.training.fit_checks import arch_entry, check_fit
from nft_deploy.training.methods import Method, make_method
from nft_deploy.training.montecarlo import torch_monte_carlo
from nft_deploy.training.noisy import NoisyModel
from nft_deploy.training.progress import Progress


@dataclass(frozen=True)
class EpochMetrics:
    """One line of the training log."""

    epoch: int
    loss: float
    clean_acc: float
    """Test accuracy with float weights, no device."""
    noisy_acc: float
    """Test accuracy under one fresh noise draw, fixed across the test set."""
    seconds: float
    """Wall time of the epoch's training steps (evaluation excluded)."""
    step_ms: float
    """Mean wall time of one optimiser step."""
    lr: float

    def line(self) -> str:
        return (f"epoch {self.epoch:3d}  loss {self.loss:.4f}  clean {100 * self.clean_acc:6.2f}%  "
                f"noisy {100 * self.noisy_acc:6.2f}%  {self.seconds:.1f}s")


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


class LossModule(nn.Module):
    """The backbone and the method's own parameters (IRS heads) as one module whose forward is the loss.

    This is what DistributedDataParallel wraps: every trainable parameter, heads included, has its
    gradient averaged across ranks, however many noisy passes the method runs.
    """

    def __init__(self, net: NoisyModel, method: Method):
        super().__init__()
        self.model = net.model
        self.extra = nn.ParameterList(method.parameters())
        self.net, self.method = net, method

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.method.loss(self.net, x, y)


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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if model is None:
            model = build_model(model_name, **arch["kwargs"])
        model.to(device).train()
        gen = torch.Generator(device=device).manual_seed(noise_seed(config.seed, dist.rank))
        sample = torch.as_tensor(data.x_train[:2], device=device)
        check_fit(config, model, sample, data, where, dist.world_size, user=model_name is None)
        net = NoisyModel(model, profile, gen, sample)
        method = make_method(config, net, sample, data.num_classes, model_name)
        if method.noisy and not net.layers:
            method.close()
            raise ConfigError(f"--profile {net.profile.name}: maps no layer of this model, so --method {method.name} "
                              "would train without device noise; check mapping.op_types and digital_layers "
                              "(`nft-deploy plan` lists every layer and why), or use --method plain")
        find_unused = dist.enabled and has_unused_parameters(model, sample)
    try:
        history = _fit(config, net, method, data, dist, on_epoch if dist.is_main else None, find_unused)
    finally:
        method.close()
    model.eval()
    method_info = {"name": method.name, **method.params()}

    def finish():
        metrics = _final_metrics(history)
        if config.mc_chips:
            metrics.update(_monte_carlo(config, model, profile, data))
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


def _fit(config, net: NoisyModel, method: Method, data: Dataset, dist: Distributed, on_epoch,
         find_unused: bool = False) -> list[EpochMetrics]:
    step = LossModule(net, method)
    loss_fn = dist.wrap(step, find_unused_parameters=find_unused)
    opt = torch.optim.Adam(step.parameters(), lr=config.lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
             if config.schedule == "cosine" else None)
    rng = np.random.default_rng(config.seed)
    xtr, ytr = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    n_local = len(dist.shard(np.arange(len(ytr))))
    n_steps = -(-n_local // config.batch_size)
    history = []
    with Progress(enabled=config.progress and dist.is_main) as bar:
        for epoch in range(1, config.epochs + 1):
            net.model.train()
            total, t0 = torch.zeros((), dtype=torch.float64, device=dist.device), time.perf_counter()
            task = bar.task(f"epoch {epoch}/{config.epochs}", n_steps)
            order = dist.shard(rng.permutation(len(ytr)))  # same permutation on every rank, then strided
            for idx in batches(len(order), config.batch_size):
                idx = order[idx]
                x, y = xtr[idx].to(dist.device, non_blocking=True), ytr[idx].to(dist.device, non_blocking=True)
                loss = loss_fn(x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach().double() * len(idx)
                bar.advance(task)
            local_sum = float(total)  # waits for the device, so the time below is the steps' own
            seconds = time.perf_counter() - t0
            bar.done(task)
            lr = opt.param_groups[0]["lr"]
            if sched is not None:
                sched.step()
            loss_sum, seen = dist.sum([local_sum, float(n_local)])
            (seconds,) = dist.max([seconds])
            dist.sync_buffers(net.model)  # rank 0's batch-norm statistics everywhere before evaluating
            clean, noisy = _evaluate(net, data, config.seed * 100_003 + epoch, max(256, config.batch_size), dist)
            m = EpochMetrics(epoch, loss_sum / seen, clean, noisy, seconds, 1000 * seconds / n_steps, lr)
            history.append(m)
            if on_epoch is not None:
                on_epoch(m)
    return history


def clean_and_noisy_accuracy(net: NoisyModel, data: Dataset, *, seed: int, batch_size: int = 512) -> tuple[float, float]:
    """Test accuracy clean and under one fresh noise draw (seeded, fixed across the test set)."""
    clean, noisy, n = _eval_counts(net, data.x_test, data.y_test, seed, batch_size)
    return clean / n, noisy / n


def _evaluate(net: NoisyModel, data: Dataset, seed: int, batch_size: int, dist: Distributed) -> tuple[float, float]:
    """``evaluate`` with the test set split across ranks: every rank draws the same chip from ``seed``
    (the weights are identical), counts its share, and the counts are summed."""
    part = slice(dist.rank, None, dist.world_size)
    clean, noisy, n = dist.sum(_eval_counts(net, data.x_test[part], data.y_test[part], seed, batch_size))
    return clean / n, noisy / n


@torch.no_grad()
def _eval_counts(net: NoisyModel, x_test, y_test, seed: int, batch_size: int) -> tuple[int, int, int]:
    model = net.model
    model.eval()
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    noisy_w = net.sample_weights(generator=gen)
    x, y = torch.as_tensor(x_test), torch.as_tensor(y_test)
    clean = noisy = 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i: i + batch_size].to(dev), y[i: i + batch_size].to(dev)
        clean += int((model(xb).argmax(1) == yb).sum())
        noisy += int((on_device(model, net.plan, noisy_w, xb).argmax(1) == yb).sum())
    model.train()
    return clean, noisy, len(y)


def _final_metrics(history: list[EpochMetrics]) -> dict[str, float]:
    last = history[-1]
    return {"loss": last.loss, "clean_acc": last.clean_acc, "noisy_acc": last.noisy_acc,
            "epochs": float(len(history)), "seconds_per_epoch": float(np.mean([h.seconds for h in history])),
            "step_ms": float(np.mean([h.step_ms for h in history]))}


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


__all__ = ["EpochMetrics", "LossModule", "TrainResult", "clean_and_noisy_accuracy", "train"]
