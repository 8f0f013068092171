"""The options that say how to load a model source (shared by ``export`` and ``plan``)."""

from __future__ import annotations

import click

from nft_deploy.errors import ExportError


def _shape(ctx, param, value):
    if value is None:
        return None
    try:
        dims = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"must be comma-separated integers such as 1,28,28; got {value!r}") from None
    if not dims or min(dims) < 1:
        raise click.BadParameter(f"must be positive integers such as 1,28,28; got {value!r}")
    return dims


def source_options(fn):
    """--model and its arguments (a plain state dict), --input-shape, --trust-checkpoint."""
    options = [
        click.option("--model", "model_name", help="Architecture of a plain state dict: lenet5, vgg8, resnet18."),
        click.option("--width", type=float, help="Width multiplier of --model."),
        click.option("--in-channels", type=int, help="Input channels of --model."),
        click.option("--num-classes", type=int, help="Classes of --model."),
        click.option("--input-size", type=int, help="Input side length of --model."),
        click.option("--input-shape", callback=_shape,
                     help="One sample's shape (C,H,W) for TorchScript or pickled modules."),
        click.option("--trust-checkpoint", is_flag=True,
                     help="Allow unpickling a full nn.Module (runs code from the file)."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def model_kwargs(kw: dict) -> dict:
    """Pops the --model arguments out of ``kw``; one-line error when they come without --model."""
    kwargs = {k: v for k in ("width", "in_channels", "num_classes", "input_size") if (v := kw.pop(k)) is not None}
    if kwargs and kw.get("model_name") is None:
        raise ExportError(f"--{next(iter(kwargs)).replace('_', '-')}: only applies with --model NAME")
    return kwargs
