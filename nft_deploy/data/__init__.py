"""Data sets for train, evaluate, compare, check and sweep: ``load_data(name)`` -> a checked ``Dataset``.

| format | ``name`` | rules |
|---|---|---|
| built-in | ``mnist-5k``, ``fashion-mnist`` | fixed splits (``builtin``) |
| .npz | ``path/d.npz`` | keys x, y (and x_test, y_test together); read without pickle |
| .npy pair | ``path/x.npy,path/y.npy`` | the whole set; 20% held out as for a .npz without x_test |
| image folder | ``path/folder`` | one subfolder per class, or train/ and test/ (``images``) |
| Python | ``module:function`` | the user's function returns arrays or a torch Dataset (``python_source``) |
| named inputs | a .npz or a function's dict without x | one array per graph input, keyed by its name, and y (``named``) |

Images come out as float32 NCHW in [0, 1] (an image folder with ``normalize``: (value - mean) / std), labels
as int64. Without a test split, 20% (at least one sample) is held out by the fixed ``SPLIT_SEED``, so the
held-out set never moves with a training seed. ``Dataset.preprocessing`` records what was done, as JSON.

Every data set is checked where it is loaded, and a ``DataError`` names the file, the key and what is
allowed: x numeric and real, shaped (N, D), (N, H, W) or (N, C, H, W), with at least one value per sample;
every x value finite (NaN and +/-Inf are counted per key, also values that overflow float32); y 1-D integers
(float labels are refused, even whole-numbered ones: cast them with ``y.astype(int)``), one per sample, in
0..C-1 with C = largest label + 1 <= ``MAX_CLASSES`` (an image folder: its number of classes); no empty
split (no test split given needs two samples to hold one out); x_test samples shaped like x.
``check_dataset`` checks a ``Dataset`` made in code the same way. Training adds ``check_test_classes``:
every class in the test split must have training samples. ``check_fits_model`` checks data against a
model's declared input (sample shape, dtype, class count).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from nft_deploy.data.arrays import load_npy_pair, load_npz
from nft_deploy.data.builtin import (
    BUILTIN_DATASETS,
    FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
    MNIST5K_TEST,
    fashion_mnist_dir,
    load_builtin,
)
from nft_deploy.data.checks import check_dataset, check_fits_model, check_test_classes
from nft_deploy.data.dataset import MAX_CLASSES, SPLIT_SEED, Dataset, batches
from nft_deploy.data.images import ImageOptions, channels_for, load_image_folder, transform_arrays
from nft_deploy.data.python_source import is_python_source, load_python
from nft_deploy.errors import DataError

FORMATS = {"builtin": "a built-in name", "npz": "a .npz file", "npy-pair": "a pair x.npy,y.npy",
           "image-folder": "an image folder", "python": "module:function"}
ALLOWED = (f"{', '.join(BUILTIN_DATASETS)}, or a path to a .npz file with x, y (and optional x_test, y_test), a "
           "pair x.npy,y.npy, an image folder (one subfolder per class) or module:function")


def data_format(name: str) -> str:
    """Which loader ``name`` goes to (a key of ``FORMATS``); DataError for none."""
    path = Path(name)
    if name in BUILTIN_DATASETS:
        return "builtin"
    if path.is_dir():
        return "image-folder"
    if name.endswith(".npz") or path.is_file():
        return "npz"
    if "," in name:
        return "npy-pair"
    if is_python_source(name):
        return "python"
    raise DataError(f"--data: unknown data set {name!r}; choose one of: {ALLOWED}")


def load_data(name: str, *, limit_train: int | None = None, limit_test: int | None = None,
              image_size: int | tuple[int, int] | None = None, normalize=None, channels: int | None = None) -> Dataset:
    """The checked (``check_dataset``) data set ``name`` in any format of the table above.

    ``image_size`` (one int or (H, W)), ``normalize`` ((mean, std), each one number or one per channel) and
    ``channels`` (1 or 3; take it from the model's input) apply to an image folder; ``image_size`` and
    ``normalize`` also to other formats holding images (N, C, H, W) (``transform_arrays``: the NFT reference's
    MNIST is ``image_size=32, normalize=(0.5, 0.5)``), ``channels`` is ignored there (``check_fits_model``
    compares the data with the model). ``limit_train`` / ``limit_test`` keep the first samples of each split.
    """
    options = ImageOptions.from_arguments(image_size, normalize, channels)
    fmt = data_format(name)
    path = Path(name)
    if fmt == "builtin":
        ds, where = load_builtin(name), name
    elif fmt == "image-folder":
        ds, where = load_image_folder(path, options), str(path)
    elif fmt == "npz":
        ds, where = load_npz(path), str(path)
    else:
        ds, where = (load_npy_pair(name) if fmt == "npy-pair" else load_python(name)), name
    if fmt != "image-folder":
        ds = transform_arrays(ds, options, where)
    for flag, limit in (("--limit-train", limit_train), ("--limit-test", limit_test)):
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise DataError(f"{flag}: must be a positive integer, got {limit!r}")
    if limit_train or limit_test:
        limits = {k: v for k, v in (("limit_train", limit_train), ("limit_test", limit_test)) if v}
        ds = replace(ds.subset(limit_train, limit_test), preprocessing={**ds.preprocessing, **limits})
    return check_dataset(ds, where)


__all__ = ["BUILTIN_DATASETS", "FASHION_MNIST_DIR", "FASHION_MNIST_ENV", "FORMATS", "MAX_CLASSES", "MNIST5K_TEST",
           "SPLIT_SEED", "Dataset", "ImageOptions", "batches", "channels_for", "check_dataset", "check_fits_model",
           "check_test_classes", "data_format", "fashion_mnist_dir", "load_data"]
