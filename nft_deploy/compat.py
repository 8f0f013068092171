"""Imports of optional third-party libraries that need help on some machines.

``import_torchvision()``: torchvision without its C++ operators. The torchvision wheel a registry serves is
often a CUDA build; next to a CPU-only torch its compiled library does not load, and ``import torchvision``
stops in ``torchvision._meta_registrations`` with ``RuntimeError: operator torchvision::nms does not exist``
(that module registers fake kernels for the C++ ops). The model definitions (``torchvision.models``) need
none of those ops (nms, roi_align, deform_conv2d serve detection heads), so after that failure the two
registration modules are replaced by empty ones and torchvision is imported again. This only matters for a
CPU torch with a CUDA torchvision (or any other mismatched pair); a matching pair imports on the first try
and is returned untouched. timm and transformers import torchvision when it is present: call this first.

torchvision is never a dependency of nft-deploy; users export their own models to ONNX, and the examples,
the benchmarks and the model-zoo tests use it to build public architectures.
"""

from __future__ import annotations

import importlib
import sys
import types

TORCHVISION_REGISTRATIONS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")
"""The torchvision modules that register its C++ ops with torch, replaced by empty modules when those ops
cannot load."""


def import_torchvision():
    """The ``torchvision`` module, importable without its C++ ops; None when torchvision is not installed.

    A first ``import torchvision`` that fails with a ``RuntimeError`` naming a ``torchvision::`` operator
    (its compiled ops do not match this torch) is retried with ``TORCHVISION_REGISTRATIONS`` stubbed out
    in ``sys.modules``; the models, transforms and functional ops written in Python then work, the C++ ops
    (``torchvision.ops.nms`` and the like) raise when called. Any other error propagates.
    """
    try:
        return importlib.import_module("torchvision")
    except ModuleNotFoundError as e:
        if e.name != "torchvision":
            raise
        return None
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    for name in TORCHVISION_REGISTRATIONS:
        sys.modules[name] = types.ModuleType(name)
    return importlib.import_module("torchvision")


__all__ = ["TORCHVISION_REGISTRATIONS", "import_torchvision"]
