"""``module:function``: the user's own loader, imported (the current directory first on ``sys.path``) and
called with no arguments. Nothing is unpickled; the code that runs is the module the user named.

The function returns (x, y), (x_train, y_train, x_test, y_test), a dict with keys x, y (and x_test, y_test
together), or a map-style torch ``Dataset`` of (x, y) items, stacked (or two of them: train, test). Arrays
may be numpy arrays, torch tensors or nested lists; they are then checked like a .npz's (the 4-tuple's items
as x, y, x_test, y_test), and without a test split 20% is held out with the fixed seed.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback

import numpy as np

from nft_deploy.data.arrays import from_arrays
from nft_deploy.data.dataset import Dataset
from nft_deploy.errors import DataError

SPEC = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)$")
RETURNS = ("(x, y), (x_train, y_train, x_test, y_test), a dict with keys x, y (and x_test, y_test), or a torch "
           "Dataset of (x, y) items (or two: train, test)")
TUPLE_KEYS = {2: ("x", "y"), 4: ("x", "y", "x_test", "y_test")}


def is_python_source(name: str) -> bool:
    """True for ``module:function`` (dotted module, identifier function)."""
    return SPEC.match(name) is not None


def load_python(spec: str) -> Dataset:
    """Import the module of ``spec``, call the function, check what it returns."""
    module_name, func_name = SPEC.match(spec).groups()
    module = _import(spec, module_name)
    func = getattr(module, func_name, None)
    if not callable(func):
        defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                         and getattr(v, "__module__", None) == module.__name__)
        what = "no function" if func is None else f"a {type(func).__name__}, not a function,"
        raise DataError(f"{spec}: module {module_name} ({getattr(module, '__file__', '?')}) has {what} named "
                        f"{func_name!r}; its functions: {', '.join(defined) or 'none'}")
    try:
        value = func()
    except Exception as e:  # the user's code failed: one line, with where
        raise DataError(f"{spec}: {func_name}() raised {_one_line(e)}; it must return {RETURNS}") from None
    arrays = _arrays(spec, func_name, value)
    return from_arrays(spec, spec, set(arrays), arrays.__getitem__, "python", holder=f"the dict {func_name}() returns",
                       alternative="return (x_train, y_train, x_test, y_test)")


def _import(spec: str, module_name: str):
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # a module written since the last import is found
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise DataError(f"--data {spec}: no module named {e.name!r} in the current directory ({cwd}) or on "
                            f"sys.path; module:function needs an importable module (e.g. {module_name.replace('.', '/')}"
                            ".py)") from None
        raise DataError(f"{spec}: importing {module_name} raised {_one_line(e)}") from None
    except Exception as e:
        raise DataError(f"{spec}: importing {module_name} raised {_one_line(e)}") from None
    finally:
        if added:
            sys.path.remove(cwd)


def _one_line(e: BaseException) -> str:
    """``Type: first line of the message (at file:line)``: the innermost frame, or a SyntaxError's own line."""
    msg = (str(e).splitlines() or [""])[0][:200]
    if isinstance(e, SyntaxError):
        return f"{type(e).__name__}: {e.msg} (at {e.filename}:{e.lineno})"
    frames = traceback.extract_tb(e.__traceback__)
    at = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {msg}{at}"


def _arrays(spec: str, func_name: str, value) -> dict[str, np.ndarray]:
    """The returned value as arrays keyed x, y (, x_test, y_test)."""
    if isinstance(value, dict):
        return {str(k): _numpy(spec, str(k), v) for k, v in value.items()}
    if _is_torch_dataset(value):
        return _stacked(spec, value, "")
    if isinstance(value, (tuple, list)) and len(value) in TUPLE_KEYS:
        datasets = [_is_torch_dataset(v) for v in value]
        if len(value) == 2 and all(datasets):
            return {**_stacked(spec, value[0], ""), **_stacked(spec, value[1], "_test")}
        if not any(datasets):
            return {k: _numpy(spec, k, v) for k, v in zip(TUPLE_KEYS[len(value)], value, strict=True)}
    kind = f"a {type(value).__name__}" + (f" of {len(value)} items" if isinstance(value, (tuple, list)) else "")
    raise DataError(f"{spec}: {func_name}() returned {kind}; it must return {RETURNS}")


def _is_torch_dataset(value) -> bool:
    torch = sys.modules.get("torch")  # a torch Dataset implies torch is imported; never import it here
    return torch is not None and isinstance(value, torch.utils.data.Dataset)


def _numpy(spec: str, key: str, value) -> np.ndarray:
    try:
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{spec}: {key}: cannot be made an array ({str(e).splitlines()[0][:200]}); give numpy "
                        "arrays, torch tensors or nested lists of numbers of one shape") from None


def _stacked(spec: str, ds, suffix: str) -> dict[str, np.ndarray]:
    """x and y (keyed with ``suffix``) of a map-style torch Dataset, item by item."""
    split = "test " if suffix else ""
    try:
        n = len(ds)
    except TypeError:
        raise DataError(f"{spec}: the {split}Dataset has no len() (an IterableDataset?); give a map-style "
                        "Dataset with __len__ and __getitem__") from None
    if n == 0:
        raise DataError(f"{spec}: the {split}Dataset is empty; it needs at least one (x, y) item")
    xs, ys = [], []
    for i in range(n):
        try:
            item = ds[i]
        except Exception as e:
            raise DataError(f"{spec}: {split}Dataset item {i}: raised {_one_line(e)}") from None
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(f"{spec}: {split}Dataset item {i}: a {type(item).__name__}"
                            f"{f' of {len(item)} items' if isinstance(item, (tuple, list)) else ''}; each item must "
                            "be a pair (x, y)")
        xs.append(_numpy(spec, f"x{suffix} (item {i})", item[0]))
        label = _numpy(spec, f"y{suffix} (item {i})", item[1])
        if label.size != 1:
            raise DataError(f"{spec}: y{suffix}: {split}Dataset item {i}'s label has shape {label.shape}; each "
                            "label must be one integer class index")
        ys.append(label.reshape(()))
        if xs[-1].shape != xs[0].shape:
            raise DataError(f"{spec}: x{suffix}: {split}Dataset item {i} has shape {xs[-1].shape} but item 0 "
                            f"{xs[0].shape}; every sample needs the same shape")
    return {f"x{suffix}": np.stack(xs), f"y{suffix}": np.stack(ys)}
