"""What the evaluator feeds a model and reads back: the test split of ``--data`` as one array per graph
input, in the dtype and rank the model declares, and the output read as logits (``--output``).

- One input: the data's x (any format) feeds it. Several: the data names one array per input, an .npz (or
  the dict ``module:function`` returns) keyed by the graph input names, plus y (``nft_deploy.data.named``).
- Each array is checked against the input it feeds (``check_fits_model``: sample shape; a dtype it can be
  cast to without changing a value: whole numbers within range for integer token ids, bool only from
  bool) and cast to the declared dtype: token ids reach the graph as int64 (N, T), never as floats.
- The logits are the first output, or the one ``--output NAME`` picks (``DeployedModel.with_output``);
  it must be (N, C).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nft_deploy.data import Dataset, channels_for, check_fits_model, load_data
from nft_deploy.data.dataset import take
from nft_deploy.errors import DataError, EvaluationError

Arrays = np.ndarray | dict[str, np.ndarray]


@dataclass(frozen=True)
class EvalData:
    """The test split to evaluate on, and how it was made."""

    name: str
    x: Arrays
    """One array (N, ...) or, for several inputs, input name -> array (``Dataset.x_test``)."""
    y: np.ndarray
    preprocessing: dict[str, Any] = field(default_factory=dict)
    """``Dataset.preprocessing``: the report's ``preprocessing`` entry."""


def resolve_data(data, config, model=None) -> EvalData:
    """The test split of ``data``: a data set name or path (``load_data`` with ``config.image_size`` and
    ``config.normalize``, an image folder's channels from ``model``'s input), a ``Dataset`` or an ``(x, y)``
    pair (x one array or a dict of named arrays), cut to ``config.limit`` samples."""
    if isinstance(data, tuple):
        x = data[0]
        x = {str(k): np.asarray(v) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x)
        name, y, record = "<arrays>", np.asarray(data[1]), {"format": "arrays"}
    else:
        if isinstance(data, Dataset):
            ds, name = data, data.name
        else:
            channels = channels_for(getattr(model, "input_shape", None))
            ds, name = load_data(str(data), image_size=config.image_size, normalize=config.normalize,
                                 channels=channels), str(data)
        x, y, record = ds.x_test, ds.y_test, dict(ds.preprocessing)
    counts = {len(a) for a in (x.values() if isinstance(x, dict) else [x])}
    if counts != {len(y)}:
        raise EvaluationError(f"--data {name}: {len(y)} labels for {'/'.join(map(str, sorted(counts)))} samples")
    if not np.issubdtype(y.dtype, np.integer):
        raise EvaluationError(f"--data {name}: labels must be integers, got {y.dtype}")
    if len(y) == 0:
        raise EvaluationError(f"--data {name}: no test samples")
    if config.limit is not None:
        record["limit"] = config.limit
    return EvalData(name, take(x, slice(config.limit)), y[:config.limit].astype(np.int64), record)


def model_inputs(model, x: Arrays, data_name: str = "<data>") -> dict[str, np.ndarray]:
    """The data as ``model``'s graph inputs, by name: each checked against its input and cast to its dtype.
    DataError (one line, listing the model's inputs and the arrays found) when one is missing."""
    names = ", ".join(i.text() for i in model.inputs)
    if isinstance(x, dict):
        missing = [i.name for i in model.inputs if i.name not in x]
        if missing:
            raise DataError(f"--data {data_name}: no array for input {missing[0]!r} of {model.name}; its inputs: "
                            f"{names}; the data holds {', '.join(sorted(x)) or 'none'} (name each array after "
                            "the input it feeds)")
        named = {i.name: x[i.name] for i in model.inputs}
    elif len(model.inputs) == 1:
        named = {model.inputs[0].name: x}
    else:
        raise DataError(f"--data {data_name}: {model.name} has {len(model.inputs)} inputs ({names}) but the data "
                        "holds one x; give one array per input, named after it: a .npz with those keys and y, "
                        "or module:function returning a dict of them")
    fed = {}
    for inp in model.inputs:
        a = np.asarray(named[inp.name])
        check_fits_model(a, shape=inp.shape, dtype=inp.dtype, data_name=data_name, model_name=model.name,
                         input_name=inp.name)
        fed[inp.name] = np.ascontiguousarray(a, inp.dtype)
    return fed


def check_input(model, x: np.ndarray, data_name: str) -> None:
    """One array's sample shape must fit the model's (first) input (symbolic dims match anything): DataError."""
    check_fits_model(x, shape=model.input_shape, data_name=data_name, model_name=model.name,
                     input_name=model.input_name)


def check_labels(model, y: np.ndarray, classes: int) -> None:
    """Every label must index one of the model's ``classes`` outputs: DataError."""
    check_fits_model(None, y, shape=None, num_classes=classes, model_name=model.name)


def check_logits(model, logits: np.ndarray) -> None:
    """The output read must be (N, C) logits (its declared shape may be missing): EvaluationError."""
    if logits.ndim != 2:
        listing = ", ".join(o.text() for o in model.outputs)
        raise EvaluationError(f"--output: {model.name} output {model.output_name!r} gives shape "
                              f"{tuple(logits.shape)}, not (N, C) logits, one row of class scores per sample; "
                              f"pick one with --output NAME: {listing}")


__all__ = ["EvalData", "check_input", "check_labels", "check_logits", "model_inputs", "resolve_data"]
