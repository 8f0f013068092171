"""The ``Dataset`` every loader returns, and the index batches that walk it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPLIT_SEED = 20230524  # fixed: the held-out set must not move with the training seed
HOLD_OUT_FRACTION = 5  # without a test split, 1/5 of the samples (at least one) is held out
MAX_CLASSES = 65536
"""Labels index classes 0..C-1; a larger label is a damaged file (it would size the output layer), not a class."""


@dataclass(frozen=True)
class Dataset:
    """Arrays ready for a model: x float32 (N, C, H, W) in [0, 1]; y int64 in [0, num_classes).

    x of a data set with several named inputs (``named``) is a dict, input name -> array (N, ...), each in
    the dtype it was given; the evaluator feeds each to the graph input of that name."""

    name: str
    x_train: np.ndarray | dict[str, np.ndarray]
    y_train: np.ndarray
    x_test: np.ndarray | dict[str, np.ndarray]
    y_test: np.ndarray
    num_classes: int
    held_out: bool = False
    """True when the test split was held out of x, y at load (a .npz without x_test)."""
    preprocessing: dict[str, Any] = field(default_factory=dict, compare=False)
    """How the arrays were made, as plain JSON values: ``format`` (builtin, npz, npy-pair, image-folder,
    python), ``source``, ``split``, and per format ``scale``, ``image_size``, ``channels``, ``normalize``,
    ``class_names``... Reports copy it as it is."""

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Shape of one sample, e.g. (1, 28, 28); None for named inputs (each has its own)."""
        return None if isinstance(self.x_train, dict) else tuple(self.x_train.shape[1:])

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """Class k's name where the format has names (an image folder's sorted subfolders), else None."""
        names = self.preprocessing.get("class_names")
        return None if names is None else tuple(names)

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first ``train`` / ``test`` samples (for quick runs and tests)."""
        return Dataset(self.name, take(self.x_train, slice(train)), self.y_train[:train],
                       take(self.x_test, slice(test)), self.y_test[:test], self.num_classes, self.held_out,
                       self.preprocessing)


def take(x: np.ndarray | dict[str, np.ndarray], index) -> np.ndarray | dict[str, np.ndarray]:
    """``x[index]``, of each named input for a dict."""
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


def hold_out_order(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) of the fixed split: a permutation by ``SPLIT_SEED``, the last fifth
    (at least one sample) held out. The same ``n`` always gives the same split."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    t = n - max(1, n // HOLD_OUT_FRACTION)
    return order[:t], order[t:]


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None):
    """Index arrays of at most ``batch_size``, shuffled by ``rng`` when given (deterministic by seed)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i: i + batch_size]
