"""Arrays from the user: a ``.npz`` (x, y and optional x_test, y_test), a pair ``x.npy,y.npy``, and the
arrays any other loader hands over (``from_arrays``: the one place that checks x and y, scales uint8 and
holds out a test split when none is given)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from nft_deploy.data.checks import check_x_values
from nft_deploy.data.dataset import HOLD_OUT_FRACTION, MAX_CLASSES, SPLIT_SEED, Dataset, hold_out_order
from nft_deploy.errors import DataError

HELD_OUT = f"held out {100 // HOLD_OUT_FRACTION}% (seed {SPLIT_SEED})"


def load_npz(path: Path) -> Dataset:
    """A ``.npz`` with x, y (and x_test, y_test together), read without pickle."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single array (.npy), not a .npz archive; save with np.savez(path, x=..., y=...) "
                        "or pass it as a pair x.npy,y.npy")
    with z:
        return from_arrays(str(path), path.stem, set(z.files), lambda key: _array(path, z, key), "npz",
                           holder="a data .npz")


def load_npy_pair(spec: str) -> Dataset:
    """``x.npy,y.npy``: samples and integer labels, the whole set; 20% is held out as for a .npz without
    x_test (``SPLIT_SEED``)."""
    parts = spec.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise DataError(f"--data {spec}: a pair is two .npy files separated by one comma, x.npy,y.npy "
                        f"(samples, then integer labels); got {len(parts)} part{'s' if len(parts) > 1 else ''}")
    x_path, y_path = (Path(p.strip()) for p in parts)
    arrays = {"x": _npy(x_path, "x"), "y": _npy(y_path, "y")}
    return from_arrays(spec, x_path.stem, set(arrays), arrays.__getitem__, "npy-pair", holder="a pair",
                       alternative="save x, y, x_test, y_test in a .npz")


def _npy(path: Path, key: str) -> np.ndarray:
    what = "samples" if key == "x" else "integer labels, one per sample"
    if not path.is_file():
        raise DataError(f"{path}: no such file; the pair x.npy,y.npy needs both files ({key}: {what})")
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # object arrays (pickle refused), truncated or not .npy
        raise DataError(f"{path}: not a .npy array readable without pickle ({str(e)[:200]}); {key} of the pair "
                        f"x.npy,y.npy must be saved with np.save (numeric {what})") from None
    if isinstance(a, np.lib.npyio.NpzFile):
        a.close()
        raise DataError(f"{path}: a .npz archive, not a single array; pass the .npz alone, or save {key} with "
                        "np.save for the pair x.npy,y.npy")
    return a


def _array(path: Path, z, key: str) -> np.ndarray:
    try:
        return z[key]
    except (ValueError, OSError, EOFError) as e:  # object arrays (pickle refused), truncated members
        raise DataError(f"{path}: {key}: cannot be read without pickle or is damaged ({e})") from None


def from_arrays(where: str, name: str, keys: set[str], get: Callable[[str], np.ndarray], fmt: str, *,
                holder: str, alternative: str = "give x_test, y_test", extra: dict | None = None) -> Dataset:
    """The ``Dataset`` of arrays keyed x, y and optionally x_test, y_test (``get(key)`` reads one): checked,
    uint8 scaled to [0, 1], (N, H, W) given a channel, 20% held out when no test split is given. ``where``
    starts every error; ``holder`` says what should hold the keys ("a data .npz")."""
    if "x" not in keys and "y" in keys and keys - {"y", "y_test"}:
        from nft_deploy.data.named import from_named

        return from_named(where, name, keys, get, fmt, alternative=alternative, extra=extra)
    if not {"x", "y"} <= keys:
        raise DataError(f"{where}: missing key {sorted({'x', 'y'} - keys)[0]!r}; {holder} holds x, y "
                        f"and optionally x_test, y_test, or one array per model input named after it, and y "
                        f"(found: {', '.join(sorted(keys)) or 'nothing'})")
    if ("x_test" in keys) != ("y_test" in keys):
        raise DataError(f"{where}: x_test and y_test must come together")
    raw = get("x")
    x, y = check_xy(where, "x", raw, "y", get("y"))
    held_out = "x_test" not in keys
    if not held_out:
        xt, yt = check_xy(where, "x_test", get("x_test"), "y_test", get("y_test"))
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"{where}: x_test: sample shape {xt.shape[1:]} differs from x {x.shape[1:]}; "
                            "both need the same sample shape")
    else:
        x, y, xt, yt = hold_out(where, x, y, alternative=alternative)
    num_classes = int(max(y.max(), yt.max())) + 1
    record = {"format": fmt, "source": where, "split": HELD_OUT if held_out else "given",
              "scale": "uint8 / 255" if raw.dtype == np.uint8 else "none", **(extra or {})}
    return Dataset(name, x, y, xt, yt, num_classes, held_out, record)


def hold_out(where: str, x: np.ndarray, y: np.ndarray, *, key: str = "x", unit: str = "sample",
             alternative: str = "give x_test, y_test"):
    """(x, y, x_test, y_test): the fixed 20% of ``x`` held out for testing (``hold_out_order``)."""
    if len(y) < 2:
        raise DataError(f"{where}: {key}: {len(y)} {unit}; without a test split 20% of {key} (at least one "
                        f"{unit}) is held out for testing, so {key} needs at least 2 {unit}s (or {alternative})")
    train, test = hold_out_order(len(y))
    return x[train], y[train], x[test], y[test]


def check_xy(where: str, xk: str, x: np.ndarray, yk: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 with a channel axis for (N, H, W), y int64) after checking dtype, shape, labels, values."""
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: {xk}: must be numeric, got dtype {x.dtype}")
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{where}: {xk}: shape {x.shape} not allowed; use (N, D), (N, H, W) or (N, C, H, W)")
    y = check_labels(where, yk, y, len(x), xk)
    check_x_values(where, xk, x)
    with np.errstate(over="ignore", invalid="ignore"):
        xf = x.astype(np.float32)
    check_x_values(where, xk, xf, raw_finite=True)
    if x.dtype == np.uint8:
        xf /= 255.0
    if x.ndim == 3:
        xf = xf[:, None]
    return xf, y


def check_labels(where: str, yk: str, y: np.ndarray, n: int, xk: str) -> np.ndarray:
    """``y`` as int64 after checking it holds one class index per sample of ``xk`` (``n`` samples)."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: {yk}: must be a 1-D integer array of labels, got {y.dtype} {y.shape}"
                        f"{_label_hint(y)}")
    if len(y) != n:
        raise DataError(f"{where}: {yk}: {len(y)} labels for {n} samples in {xk}; give one label per sample")
    if len(y) == 0:
        raise DataError(f"{where}: {xk}: no samples; needs at least one")
    if y.min() < 0:
        raise DataError(f"{where}: {yk}: labels must be >= 0, found {y.min()}")
    if y.max() >= MAX_CLASSES:
        raise DataError(f"{where}: {yk}: label {y.max()} would make {int(y.max()) + 1} classes; labels are class "
                        f"indices 0..C-1 with at most {MAX_CLASSES} classes")
    return y.astype(np.int64)


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
