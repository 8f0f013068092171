"""Several named inputs in one data set, for models with more than one graph input (``--data`` by name).

A .npz, or the dict ``module:function`` returns, without key ``x``: every key other than ``y`` and the
``*_test`` keys is one input, named after the graph input it feeds (``ids``, ``mask``, ``y``). A test split
is ``<name>_test`` for every input plus ``y_test``, all together; without one, 20% is held out with the
fixed seed, the same samples of every input. Arrays keep the dtype they were given (token ids stay
integers, masks bool; nothing is scaled): the evaluator checks each against the dtype and shape the model
declares (``check_fits_model``) and casts it there. Training takes one x, not named inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nft_deploy.data.arrays import HELD_OUT, check_labels, hold_out
from nft_deploy.data.checks import check_x_values
from nft_deploy.data.dataset import Dataset, take
from nft_deploy.errors import DataError


def from_named(where: str, name: str, keys: set[str], get: Callable[[str], np.ndarray], fmt: str, *,
               alternative: str, extra: dict | None = None) -> Dataset:
    """The ``Dataset`` whose x is a dict of named inputs (see the module docstring)."""
    test_keys = {k for k in keys if k.endswith("_test")}
    names = sorted(keys - test_keys - {"y"})
    want_test = {f"{n}_test" for n in names} | {"y_test"}
    if test_keys and test_keys != want_test:
        raise DataError(f"{where}: a test split of named inputs is {', '.join(sorted(want_test))}, all together; "
                        f"found {', '.join(sorted(test_keys))}")
    x = {n: named_array(where, n, get(n)) for n in names}
    y = check_labels(where, "y", get("y"), len(x[names[0]]), names[0])
    _same_length(where, x, len(y), "y")
    if test_keys:
        xt = {n: named_array(where, f"{n}_test", get(f"{n}_test"), like=x[n]) for n in names}
        yt = check_labels(where, "y_test", get("y_test"), len(xt[names[0]]), f"{names[0]}_test")
        _same_length(where, xt, len(yt), "y_test")
    else:
        train, y, test, yt = hold_out(where, np.arange(len(y)), y, key=names[0], alternative=alternative)
        x, xt = take(x, train), take(x, test)
    record = {"format": fmt, "source": where, "split": "given" if test_keys else HELD_OUT, "inputs": names,
              "scale": "none", **(extra or {})}
    return Dataset(name, x, y, xt, yt, int(max(y.max(), yt.max())) + 1, not test_keys, record)


def named_array(where: str, key: str, value, like: np.ndarray | None = None) -> np.ndarray:
    """One named input: numeric or bool, real, finite, one row per sample (N, ...); ``like``: the training
    array whose sample shape a test array must have."""
    a = np.asarray(value)
    if a.ndim < 1:
        raise DataError(f"{where}: {key}: a scalar; each input needs one row per sample, shaped (N, ...)")
    if a.dtype != np.bool_:
        check_x_values(where, key, a)
    if like is not None and a.shape[1:] != like.shape[1:]:
        raise DataError(f"{where}: {key}: sample shape {a.shape[1:]} differs from the training samples' "
                        f"{like.shape[1:]}; both splits need the same sample shape")
    return a


def _same_length(where: str, x: dict[str, np.ndarray], n: int, yk: str) -> None:
    for k, a in x.items():
        if len(a) != n:
            raise DataError(f"{where}: {k}: {len(a)} samples but {yk} has {n} labels; every input needs one row "
                            "per sample")
