"""Before a run trains anything: does the model fit the data? (shape, class count, batch norm on a batch of
one), and the checkpoint's ``arch`` entry that rebuilds the model. A failure is one ``DataError`` or
``ConfigError`` line before the first step, not a stack trace mid-epoch."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from nft_deploy.data import Dataset
from nft_deploy.errors import ConfigError, DataError
from nft_deploy.models import MODELS, check_input_shape
from nft_deploy.training.config import TrainConfig


def check_fit(config: TrainConfig, model: nn.Module, sample: torch.Tensor, data: Dataset, where: str,
               world_size: int = 1, user: bool = True) -> None:
    """Before training, on one probe forward of two samples (eval mode, no gradient, so no batch-norm
    statistics move): a user module's logits must be (N, K) with K > every label; and a batch of one sample
    (``--batch-size 1``, or a last batch of one on any rank) must not reach a batch norm that would see a
    single value per channel (PyTorch refuses to normalise it mid-run)."""
    n = len(data.y_train)
    n_local = min((len(range(r, n, world_size)) for r in range(world_size)),
                  key=lambda k: (k % config.batch_size != 1, k))  # the rank with a last batch of one, if any
    norms = {m: name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    single: list[tuple[str, tuple[int, ...]]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: single.append((norms[m], tuple(args[0].shape[1:])))
                                         if args[0][0].numel() == args[0].shape[1] else None) for m in norms]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(sample)
    except Exception as e:  # noqa: BLE001 - a user module's forward can raise anything
        if not user:  # built-in models were checked against the shape: a failure here is a bug
            raise
        raise DataError(f"{where}: x: the model's forward fails on samples of shape {tuple(sample.shape[1:])} "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); give data "
                        "of the shape the model takes") from None
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model: its forward returns {shape} for a batch of {len(sample)}; training needs "
                          "logits of shape (N, classes)")
    if out.shape[1] < data.num_classes:
        raise DataError(f"{where}: y: labels run up to {data.num_classes - 1} but the model gives {out.shape[1]} "
                        f"outputs per sample; labels must be in 0..{out.shape[1] - 1}")
    if single and (config.batch_size == 1 or n_local % config.batch_size == 1):
        name, shape = single[0]
        size = ("--batch-size 1 makes batches of one sample" if config.batch_size == 1 else
                f"{n_local} training samples at --batch-size {config.batch_size} leave a last batch of one sample")
        raise DataError(f"{where}: x: {size}, and batch norm {name!r} sees one value per channel there (its input is "
                        f"{shape} per sample, from samples of {tuple(sample.shape[1:])}); training cannot "
                        "normalise one value: choose a --batch-size that leaves no batch of one sample, or "
                        "--limit-train, or larger images")


def arch_entry(config: TrainConfig, data: Dataset, model: nn.Module | None, where: str | None = None
          ) -> tuple[dict, str | None]:
    """Checkpoint ``arch`` entry and the built-in model name (None for a user module)."""
    shape = data.input_shape
    if model is not None:
        kwargs = {"in_channels": shape[0], "num_classes": data.num_classes,
                  "input_size": shape[-1] if len(shape) > 1 else None, "width": config.width}
        return {"name": type(model).__name__, "kwargs": kwargs}, None
    check_input_shape(config.model, shape, where or data.name)
    width = config.width
    if width is None:
        width = inspect.signature(MODELS[config.model]).parameters["width"].default
    kwargs = {"in_channels": shape[0], "num_classes": data.num_classes, "input_size": shape[1], "width": width}
    return {"name": config.model, "kwargs": kwargs}, config.model
