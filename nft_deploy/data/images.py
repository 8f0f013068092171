"""An image folder: one subfolder per class, read with Pillow into float32 (N, C, H, W).

Rules (each broken one is one ``DataError`` naming the file or folder):

- Class k is the k-th subfolder name in sorted order; the names are kept (``Dataset.class_names``). Files
  directly in the folder (a README) and names starting with ``.`` are ignored; every other file in a class
  subfolder must be an image Pillow reads, and every class subfolder needs at least one.
- With both ``train/`` and ``test/`` subfolders those are the splits (each holding class subfolders; the
  classes are train/'s, test/ may hold fewer; other entries are ignored); otherwise 20% is held out with the
  fixed seed, exactly as for a .npz without x_test.
- ``channels`` 1 converts to grayscale (Pillow's ``L``), 3 to RGB (alpha dropped); None picks 1 when every
  image is single-band (modes 1, L, LA), else 3. 16-bit and float images (modes I, I;16, F) are refused.
- ``image_size`` (H, W) resizes every image (bilinear); without it all images must have one size.
- Values are pixel / 255 in [0, 1]; ``normalize=(mean, std)`` then gives (value - mean) / std per channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nft_deploy.data.arrays import HELD_OUT, hold_out
from nft_deploy.data.dataset import Dataset
from nft_deploy.data.options import parse_normalize
from nft_deploy.errors import DataError

GRAYSCALE_MODES = ("1", "L", "LA")
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # more than 8 bits: L would clip them
RESAMPLE = "bilinear"
LAYOUT = "one subfolder per class (e.g. cat/, dog/), or train/ and test/ each holding them"


@dataclass(frozen=True)
class ImageOptions:
    """How images become arrays; ``from_arguments`` checks the keyword arguments ``load_data`` takes."""

    image_size: tuple[int, int] | None = None
    """(H, W) every image is resized to (bilinear); None: keep the size, which must then be the same for all."""
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    """(means, stds), one value for all channels or one per channel: x = (pixel / 255 - mean) / std."""
    channels: int | None = None
    """1 (grayscale) or 3 (RGB), from the model's input; None: 1 when every image is single-band, else 3."""

    @classmethod
    def from_arguments(cls, image_size=None, normalize=None, channels=None) -> ImageOptions:
        return cls(_size(image_size), _normalize(normalize), _channels(channels))

    def given(self) -> list[str]:
        """The flags set, for the error when they come with a format that is not an image folder."""
        return [flag for flag, v in (("--image-size", self.image_size), ("--normalize", self.normalize)) if v]


def _size(value) -> tuple[int, int] | None:
    if value is None:
        return None
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                                 for d in dims):
        raise DataError(f"--image-size: must be a positive integer or (H, W) of positive integers, got {value!r}")
    return int(dims[0]), int(dims[1])


def _normalize(value) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_normalize(value)
    try:
        mean, std = value
        mean, std = (tuple(float(v) for v in np.atleast_1d(np.asarray(a, float)).reshape(-1)) for a in (mean, std))
    except (TypeError, ValueError):
        raise DataError(f"--normalize: must be (mean, std), each one number or one per channel, got {value!r}") from None
    if not mean or not std or not np.isfinite(mean + std).all() or min(std) <= 0:
        raise DataError(f"--normalize: means must be finite and stds finite and > 0, got mean {list(mean)}, "
                        f"std {list(std)}")
    return mean, std


def _channels(value) -> int | None:
    if value is not None and (isinstance(value, bool) or value not in (1, 3)):
        raise DataError(f"channels: must be 1 (grayscale) or 3 (RGB), the model's input channels; got {value!r}")
    return None if value is None else int(value)


def channels_for(input_shape) -> int | None:
    """``channels`` for ``load_data`` from a model's per-sample input shape: C of (C, H, W) when it is 1 or 3,
    else None (the folder decides; ``check_fits_model`` then names any mismatch)."""
    if input_shape is not None and len(input_shape) == 3 and input_shape[0] in (1, 3):
        return int(input_shape[0])
    return None


def load_image_folder(root: Path, options: ImageOptions) -> Dataset:
    """The ``Dataset`` of an image folder (see the module's rules)."""
    where = str(root)
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() != test_dir.is_dir():
        have, lack = ("train", "test") if train_dir.is_dir() else ("test", "train")
        raise DataError(f"{root}: has {have}/ but no {lack}/; give both (each with one subfolder per class) or "
                        "neither (20% is then held out)")
    split = train_dir.is_dir()
    class_names = _class_names(train_dir if split else root)
    files = _files(train_dir if split else root, class_names)
    test_files = _files(test_dir, class_names, test=True) if split else []
    heads = [_header(path) for path, _ in files + test_files]
    channels = options.channels or (1 if all(mode in GRAYSCALE_MODES for _, mode, _ in heads) else 3)
    size = options.image_size or _common_size(heads)
    stats = None if options.normalize is None else _stats(options.normalize, channels)
    x, y = _decode(files, channels, size, stats)
    if split:
        xt, yt = _decode(test_files, channels, size, stats)
    else:
        x, y, xt, yt = hold_out(where, x, y, key="images", unit="image", alternative="add train/ and test/ subfolders")
    record = {"format": "image-folder", "source": where, "split": "train/ and test/ subfolders" if split else HELD_OUT,
              "class_names": list(class_names), "channels": channels, "image_size": list(size),
              "resized": any(tuple(hw) != tuple(size) for _, _, hw in heads), "resample": RESAMPLE,
              "scale": "pixel / 255",
              "normalize": None if options.normalize is None else {"mean": list(options.normalize[0]),
                                                                   "std": list(options.normalize[1])}}
    return Dataset(root.name or where, x, y, xt, yt, len(class_names), not split, record)


def _class_names(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(f"{folder}: no class subfolders; an image folder holds {LAYOUT}")
    return names


def _files(folder: Path, class_names: list[str], test: bool = False) -> list[tuple[Path, int]]:
    """(image file, class index) in sorted order; test/ may hold only classes of train/."""
    if test:
        extra = sorted(set(_class_names(folder)) - set(class_names))
        if extra:
            raise DataError(f"{folder / extra[0]}: class {extra[0]!r} is not in train/ (classes: "
                            f"{', '.join(class_names)}); test/ may only hold classes that train/ has")
    out = []
    for k, name in enumerate(class_names):
        sub = folder / name
        if test and not sub.is_dir():
            continue
        entries = sorted(p for p in sub.iterdir() if not p.name.startswith("."))
        nested = [p for p in entries if p.is_dir()]
        if nested:
            raise DataError(f"{nested[0]}: a folder inside class folder {name!r}; images go directly in their "
                            "class subfolder (one level)")
        if not entries:
            raise DataError(f"{sub}: class {name!r} has no images; every class subfolder needs at least one")
        out += [(p, k) for p in entries]
    return out


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read; an image folder holds only images in its class "
                        "subfolders") from None
    except (OSError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot be read as an image ({str(e)[:200]})") from None


def _header(path: Path) -> tuple[Path, str, tuple[int, int]]:
    """(path, mode, (H, W)) from the file's header; wide modes refused here, before any decoding."""
    with _open(path) as im:
        if im.mode in WIDE_MODES:
            raise DataError(f"{path}: mode {im.mode} (more than 8 bits per pixel) is not supported; save 8-bit "
                            "grayscale (L) or RGB images")
        return path, im.mode, (im.height, im.width)


def _common_size(heads: list[tuple[Path, str, tuple[int, int]]]) -> tuple[int, int]:
    """(H, W) shared by every image; DataError naming the first that differs."""
    first, _, want = heads[0]
    for path, _, hw in heads:
        if hw != want:
            raise DataError(f"{path}: image is {hw[0]}x{hw[1]} (H x W) but {first} is {want[0]}x{want[1]}; "
                            "images of different sizes need --image-size H,W (or image_size=(H, W))")
    return want


def _decode(files: list[tuple[Path, int]], channels: int, size: tuple[int, int],
            stats: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (N, C, H, W), y int64): each image converted, resized, scaled, normalized."""
    from PIL import Image

    x = np.empty((len(files), channels, *size), np.float32)
    for i, (path, _) in enumerate(files):
        with _open(path) as im:
            try:
                im = im.convert("L" if channels == 1 else "RGB")
                if (im.height, im.width) != size:
                    im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                a = np.asarray(im, np.float32)
            except (OSError, ValueError) as e:  # truncated data, a mode Pillow cannot convert
                raise DataError(f"{path}: cannot be read as an image ({str(e)[:200]})") from None
        x[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    x /= 255.0
    if stats is not None:
        x = (x - stats[0]) / stats[1]
    return x, np.array([k for _, k in files], np.int64)


def transform_arrays(ds: Dataset, options: ImageOptions, where: str) -> Dataset:
    """``image_size`` and ``normalize`` applied to a data set that is already arrays (a built-in, .npz, pair or
    function): each (C, H, W) sample resized per channel (Pillow, bilinear, on the float values), then
    (x - mean) / std. The NFT reference's MNIST is ``image_size=32, normalize=(0.5, 0.5)``: 32x32 in [-1, 1]."""
    if not (options.image_size or options.normalize):
        return ds
    if isinstance(ds.x_train, dict) or ds.x_train.ndim != 4:
        shape = "named inputs" if isinstance(ds.x_train, dict) else f"samples of shape {ds.x_train.shape[1:]}"
        raise DataError(f"{where}: {options.given()[0]}: applies to images (N, C, H, W); this data has {shape}")
    channels = ds.x_train.shape[1]
    stats = None if options.normalize is None else _stats(options.normalize, channels)
    x, xt = (_resize_arrays(a, options.image_size) for a in (ds.x_train, ds.x_test))
    if stats is not None:
        x, xt = (x - stats[0]) / stats[1], (xt - stats[0]) / stats[1]
    record = {**ds.preprocessing, "image_size": list(x.shape[2:]),
              "resized": tuple(ds.x_train.shape[2:]) != tuple(x.shape[2:]),
              "resample": RESAMPLE, "normalize": None if options.normalize is None else
              {"mean": list(options.normalize[0]), "std": list(options.normalize[1])}}
    return Dataset(ds.name, x.astype(np.float32), ds.y_train, xt.astype(np.float32), ds.y_test, ds.num_classes,
                   ds.held_out, record)


def _resize_arrays(x: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or tuple(x.shape[2:]) == size:
        return x.astype(np.float32)
    from PIL import Image

    out = np.empty((*x.shape[:2], *size), np.float32)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            im = Image.fromarray(np.ascontiguousarray(x[i, c], np.float32), mode="F")
            out[i, c] = np.asarray(im.resize((size[1], size[0]), Image.Resampling.BILINEAR), np.float32)
    return out


def _stats(normalize, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) as float32 arrays broadcasting over (N, C, H, W); one value or one per channel."""
    stats = []
    for name, values in zip(("means", "stds"), normalize, strict=True):
        if len(values) not in (1, channels):
            raise DataError(f"--normalize: {len(values)} {name} for {channels}-channel images; give one value or "
                            f"one per channel ({channels})")
        stats.append(np.asarray(values, np.float32).reshape(1, -1, 1, 1))
    return stats[0], stats[1]
