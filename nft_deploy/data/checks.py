"""Checks on loaded data: a ``Dataset`` on its own (``check_dataset``, ``check_test_classes``) and data
against a model's declared input (``check_fits_model``: sample shape, dtype, class count)."""

from __future__ import annotations

import numpy as np

from nft_deploy.data.dataset import MAX_CLASSES, Dataset
from nft_deploy.errors import DataError


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
        y = np.asarray(getattr(ds, yk))
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: {yk}: must be a 1-D integer array of labels, got {y.dtype} {y.shape}")
        for key, x in _x_arrays(getattr(ds, xk), xk, split):
            if x.ndim < (2 if key == xk else 1):
                raise DataError(f"{where}: {key}: shape {x.shape}; needs one row per sample: (N, D), (N, H, W) or "
                                "(N, C, H, W)")
            if x.dtype != np.bool_ or key == xk:  # a named input may be a bool mask
                check_x_values(where, key, x)
            if len(y) != len(x):
                raise DataError(f"{where}: {yk}: {len(y)} labels for {len(x)} samples in {key}; give one label per "
                                "sample")
        if len(y) == 0:
            raise DataError(f"{where}: {xk}: no samples; each split needs at least one")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= ds.num_classes:
            raise DataError(f"{where}: {yk}: label {lo if lo < 0 else hi} is out of range; labels must be in "
                            f"0..{ds.num_classes - 1} ({ds.num_classes} classes)")
    train = dict(_x_arrays(ds.x_train, "x_train", "train"))
    for key, x in _x_arrays(ds.x_test, "x_test", "test"):
        like = train.get(key.removesuffix("_test") if isinstance(ds.x_test, dict) else "x_train")
        if like is None or x.shape[1:] != like.shape[1:]:
            raise DataError(f"{where}: {key}: sample shape {x.shape[1:]} differs from the training samples' "
                            f"{None if like is None else like.shape[1:]}; both splits need the same inputs and "
                            "sample shapes")
    return ds


def _x_arrays(x, xk: str, split: str) -> list[tuple[str, np.ndarray]]:
    """(key, array) of one split's x: ``[(xk, x)]``, or one per named input (test keys end in ``_test``)."""
    if not isinstance(x, dict):
        return [(xk, np.asarray(x))]
    return [(k if split == "train" else f"{k}_test", np.asarray(v)) for k, v in x.items()]


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


def check_x_values(where: str, key: str, x: np.ndarray, raw_finite: bool | None = None) -> None:
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


# ---------------------------------------------------------------- data against a model


def check_fits_model(x: np.ndarray | None, y: np.ndarray | None = None, *, shape: tuple[int | None, ...] | None,
                     dtype=None, num_classes: int | None = None, data_classes: int | None = None,
                     data_name: str | None = None, model_name: str = "the model",
                     input_name: str = "input") -> None:
    """One DataError line unless the data fits what the model declares, naming the expected and found values.

    ``shape``: one sample's shape (None entries are symbolic and match anything; ``shape=None`` skips the
    check). ``dtype``: the input's element type; a float input takes any real data, an integer input (token
    ids) takes whole numbers within its range. ``num_classes``: the model's outputs; every label in ``y``
    must be in 0..num_classes-1, and ``data_classes`` (the classes the data declares, e.g. an image
    folder's subfolders) must not exceed it.
    """
    lead = f"--data {data_name}: " if data_name is not None else ""
    if shape is not None:
        want, got = tuple(shape), tuple(x.shape[1:])
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got, strict=True)):
            shown = ", ".join("?" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "")
            raise DataError(f"{lead}samples have shape {got}, but {model_name} input {input_name!r} expects ({shown})")
    if dtype is not None:
        problem = _dtype_problem(np.asarray(x), np.dtype(dtype))
        if problem:
            allowed = "whole numbers within its range" if np.dtype(dtype).kind in "iu" else "real numbers"
            raise DataError(f"{lead}samples are {problem}, but {model_name} input {input_name!r} expects "
                            f"{np.dtype(dtype)} ({allowed})")
    if num_classes is not None and data_classes is not None and data_classes > num_classes:
        raise DataError(f"{lead}classes: the data has {data_classes} classes, but {model_name} has {num_classes} "
                        f"outputs; the data may have at most {num_classes}")
    if num_classes is not None and y is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.min() if y.min() < 0 else y.max())
        raise DataError(f"{lead}labels: {bad} is out of range for {model_name}, which has {num_classes} outputs "
                        f"(labels must be in [0, {num_classes - 1}])")


def _dtype_problem(x: np.ndarray, want: np.dtype) -> str | None:
    """Why ``x`` cannot be fed as ``want`` without changing a value (None: it can)."""
    if want.kind == "f":
        return None if x.dtype.kind in "fiu" else f"{x.dtype}"
    if want.kind not in "iu":
        return None if x.dtype == want else f"{x.dtype}"
    if x.dtype.kind not in "fiu":
        return f"{x.dtype}"
    if x.size == 0:
        return None
    flat = x.reshape(len(x), -1)
    whole = np.isfinite(flat) & (flat == np.round(flat)) if x.dtype.kind == "f" else np.ones(flat.shape, bool)
    if not whole.all():
        sample = int(np.flatnonzero(~whole.all(axis=1))[0])
        return f"{x.dtype} with values that are not whole numbers (first: sample {sample})"
    info = np.iinfo(want)
    lo, hi = flat.min(), flat.max()
    if lo < info.min or hi > info.max:
        return f"{x.dtype} with values in [{lo:g}, {hi:g}], beyond {want}'s range"
    return None
