"""Set-up of the model-zoo suite: the test-only libraries (torchvision, timm, transformers), importable
on a CPU torch, or a skip that names what is missing.

The torchvision wheel the registry serves is a CUDA build. With the CPU torch its C++ ops do not load,
and ``import torchvision`` stops in ``torchvision._meta_registrations`` (``RuntimeError: operator
torchvision::nms does not exist``), which registers fake kernels for those ops. The model definitions
need none of them (nms, roi_align, deform_conv2d are detection ops), so after that failure the two
registration modules are replaced by empty ones and torchvision is imported again. timm and transformers
import torchvision when it is present, so they go through the same door.
"""

from __future__ import annotations

import importlib
import sys
import types

import pytest

_REGISTRATIONS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def import_torchvision():
    """``torchvision``, importable without its C++ ops; None when it is not installed."""
    try:
        return importlib.import_module("torchvision")
    except ModuleNotFoundError:
        return None
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    for name in _REGISTRATIONS:
        sys.modules[name] = types.ModuleType(name)
    return importlib.import_module("torchvision")


def need(library: str):
    """The test-only ``library`` (torchvision, timm, transformers), or skip the test naming it."""
    if library == "torchvision" or library == "timm":  # timm needs torchvision
        if import_torchvision() is None:
            pytest.skip(f"{library}: torchvision is not installed (a test-only dependency of tests/zoo)")
    else:
        import_torchvision()  # transformers imports it when present
    try:
        return importlib.import_module(library)
    except ModuleNotFoundError:
        pytest.skip(f"{library} is not installed (a test-only dependency of tests/zoo)")


@pytest.fixture(scope="session")
def library():
    """``library(name)``: a test-only library, or a skip naming it."""
    return need
