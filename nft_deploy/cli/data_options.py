"""The options that say how an image folder given to ``--data`` becomes arrays (train, evaluate, compare,
check, sweep): ``--image-size`` and ``--normalize``; ``data_kwargs`` hands them to ``load_data``."""

from __future__ import annotations

import math

import click

IMAGE_SIZE_HELP = "Image folders: resize every image to H,W (bilinear), or to N,N with one number (e.g. 32 or 32,28)."
NORMALIZE_HELP = ("Image folders: (pixel/255 - MEAN) / STD: MEAN,STD for every channel, or one value per channel "
                  "as M1,M2,M3;S1,S2,S3 (quote it in a shell).")


def _numbers(text: str, kind: type, value: str) -> tuple:
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of {kind.__name__}s (got {value!r})") from None


def _image_size(ctx, param, value):
    if value is None:
        return None
    dims = _numbers(value, int, value)
    if len(dims) not in (1, 2) or min(dims) < 1:
        raise click.BadParameter(f"must be one or two positive integers, N or H,W (e.g. 32 or 32,28); got {value!r}")
    return dims * 2 if len(dims) == 1 else dims


def _normalize(ctx, param, value):
    if value is None:
        return None
    if ";" in value:
        parts = value.split(";")
        if len(parts) != 2:
            raise click.BadParameter(f"per channel it is M1,M2,M3;S1,S2,S3 (one ';'); got {value!r}")
        mean, std = (_numbers(p, float, value) for p in parts)
        if len(mean) != len(std):
            raise click.BadParameter(f"{len(mean)} means but {len(std)} stds; give one of each per channel, got {value!r}")
    else:
        pair = _numbers(value, float, value)
        if len(pair) != 2:
            raise click.BadParameter(f"MEAN,STD is two numbers (per channel: M1,M2,M3;S1,S2,S3); got {value!r}")
        mean, std = pair[:1], pair[1:]
    if not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
        raise click.BadParameter(f"means must be finite and stds finite and > 0; got {value!r}")
    return mean, std


OPTIONS = (("--image-size", dict(callback=_image_size, metavar="H,W", help=IMAGE_SIZE_HELP)),
           ("--normalize", dict(callback=_normalize, metavar="MEAN,STD", help=NORMALIZE_HELP)))


def data_params() -> list[click.Option]:
    """The two options as click parameters, for a command whose parameters are generated (train)."""
    return [click.Option([flag], **attrs) for flag, attrs in OPTIONS]


def data_options(fn):
    """--image-size and --normalize (they apply to an image folder given to --data)."""
    for flag, attrs in reversed(OPTIONS):
        fn = click.option(flag, **attrs)(fn)
    return fn


def data_kwargs(kw: dict) -> dict:
    """Pops --image-size and --normalize out of ``kw``: the keyword arguments ``load_data`` takes for them
    (``image_size=(H, W)``, ``normalize=(means, stds)``), only those given."""
    return {k: v for k in ("image_size", "normalize") if (v := kw.pop(k, None)) is not None}
