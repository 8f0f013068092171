"""The options that say how an image folder given to ``--data`` becomes arrays, declared once: ``EvalConfig``
(evaluate, compare, check, sweep) and ``TrainConfig`` (train) each take them as fields from these factories,
so ``--image-size`` and ``--normalize`` are generated like every other flag and reach ``load_data``."""

from __future__ import annotations

from typing import Any

from nft_deploy.errors import DataError
from nft_deploy.options import option

DATA_HELP = ("mnist-5k, fashion-mnist, a .npz (x, y[, x_test, y_test]), a pair x.npy,y.npy, an image folder (one "
             "subfolder per class) or module:function")
IMAGE_SIZE_HELP = "Image folders: resize every image to H,W (bilinear), or to N,N with one number (e.g. 32 or 32,28)."
NORMALIZE_HELP = ("Image folders: (pixel/255 - MEAN) / STD: MEAN,STD for every channel, or one value per channel "
                  "as M1,M2,M3;S1,S2,S3 (quote it in a shell).")


def image_size_option() -> Any:
    """The ``image_size`` field: (H, W) or (N,) from ``--image-size H,W``; None keeps the images' size."""
    return option(None, IMAGE_SIZE_HELP, metavar="H,W")


def normalize_option() -> Any:
    """The ``normalize`` field: ``MEAN,STD`` text (or ``M1,M2,M3;S1,S2,S3``), or (means, stds) from Python."""
    return option(None, NORMALIZE_HELP, metavar="MEAN,STD")


def parse_normalize(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``"0.5,0.25"`` -> ((0.5,), (0.25,)); ``"M1,M2,M3;S1,S2,S3"`` -> one mean and std per channel."""
    parts = text.split(";")
    if len(parts) > 2:
        raise DataError(f"--normalize: per channel it is M1,M2,M3;S1,S2,S3 (one ';'); got {text!r}")
    try:
        values = [tuple(float(v) for v in p.split(",")) for p in parts]
    except ValueError:
        raise DataError(f"--normalize: {text!r} is not comma-separated numbers: MEAN,STD or M1,M2,M3;S1,S2,S3") from None
    if len(parts) == 1:
        if len(values[0]) != 2:
            raise DataError(f"--normalize: MEAN,STD is two numbers (per channel: M1,M2,M3;S1,S2,S3); got {text!r}")
        return values[0][:1], values[0][1:]
    if len(values[0]) != len(values[1]):
        raise DataError(f"--normalize: {len(values[0])} means but {len(values[1])} stds; give one of each per "
                        f"channel, got {text!r}")
    return values[0], values[1]


__all__ = ["DATA_HELP", "IMAGE_SIZE_HELP", "NORMALIZE_HELP", "image_size_option", "normalize_option",
           "parse_normalize"]
