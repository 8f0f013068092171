"""The epoch loop of ``train``: optimiser steps over shuffled shards, the per-epoch test (clean and one seeded
noisy draw), and the protocol options that act per step or per epoch: the sigma warm-up, per-layer
diagnostics (``protocol.Diagnostics``) and the best-validation-epoch selection (``protocol.BestEpoch``)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from nft_deploy.data import Dataset, batches
from nft_deploy.errors import Note
from nft_deploy.training.crossbars import on_device
from nft_deploy.training.distributed import Distributed
from nft_deploy.training.methods import Method
from nft_deploy.training.noisy import NoisyModel
from nft_deploy.training.progress import Progress
from nft_deploy.training.protocol import BestEpoch, Diagnostics, warmup_sigma


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
    sigma: float | None = None
    """Training sigma at the epoch's last step (below the plan's during ``--sigma-warmup``); None: no noise."""
    val_noisy_acc: float | None = None
    """Noisy accuracy on the validation split (``--select best``), one seeded draw; None without one."""
    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per mapped layer: ``noise_to_rms`` (programming noise / rms weight) and ``grad_norm`` (mean over steps)."""

    def line(self) -> str:
        val = "" if self.val_noisy_acc is None else f"  val noisy {100 * self.val_noisy_acc:6.2f}%"
        return (f"epoch {self.epoch:3d}  loss {self.loss:.4f}  clean {100 * self.clean_acc:6.2f}%  "
                f"noisy {100 * self.noisy_acc:6.2f}%{val}  {self.seconds:.1f}s")


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


def fit(config, net: NoisyModel, method: Method, data: Dataset, dist: Distributed, on_epoch,
        find_unused: bool = False, val: Dataset | None = None) -> tuple[list[EpochMetrics], BestEpoch | None]:
    """Train for ``config.epochs``; with ``val`` (``--select best``) also the best validation epoch's weights."""
    step = LossModule(net, method)
    loss_fn = dist.wrap(step, find_unused_parameters=find_unused)
    opt = torch.optim.Adam(step.parameters(), lr=config.lr)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
             if config.schedule == "cosine" else None)
    rng = np.random.default_rng(config.seed)
    xtr, ytr = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    n_local = len(dist.shard(np.arange(len(ytr))))
    n_steps = -(-n_local // config.batch_size)
    history, diagnostics, best = [], Diagnostics(net), BestEpoch() if val is not None else None
    with Progress(enabled=config.progress and dist.is_main) as bar:
        for epoch in range(1, config.epochs + 1):
            net.model.train()
            total, t0 = torch.zeros((), dtype=torch.float64, device=dist.device), time.perf_counter()
            task = bar.task(f"epoch {epoch}/{config.epochs}", n_steps)
            order = dist.shard(rng.permutation(len(ytr)))  # same permutation on every rank, then strided
            for k, idx in enumerate(batches(len(order), config.batch_size)):
                net.ramp = warmup_sigma(1.0, epoch - 1 + k / n_steps, config.sigma_warmup)
                idx = order[idx]
                x, y = xtr[idx].to(dist.device, non_blocking=True), ytr[idx].to(dist.device, non_blocking=True)
                loss = loss_fn(x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                diagnostics.step()
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
            sigma, net.ramp = (net.sigma * net.ramp if method.noisy else None), 1.0
            clean, noisy = _evaluate(net, data, config.seed * 100_003 + epoch, max(256, config.batch_size), dist)
            val_acc = None
            if best is not None:  # one chip for every epoch: the epochs are compared on the same draw
                val_acc = _evaluate(net, val, config.seed * 100_003, max(256, config.batch_size), dist)[1]
                best.offer(epoch, val_acc, net.model)
            layers, notes = diagnostics.epoch()
            for note in notes if dist.is_main else ():
                warnings.warn(note, Note, stacklevel=2)
            m = EpochMetrics(epoch, loss_sum / seen, clean, noisy, seconds, 1000 * seconds / n_steps, lr, sigma,
                             val_acc, layers)
            history.append(m)
            if on_epoch is not None:
                on_epoch(m)
    return history, best


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




__all__ = ["EpochMetrics", "LossModule", "clean_and_noisy_accuracy", "fit"]
