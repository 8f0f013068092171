"""Set-up of the model-zoo suite: the test-only libraries (torchvision, timm, transformers), importable
on a CPU torch next to a CUDA torchvision wheel (``nft_deploy.compat.import_torchvision`` stubs its C++ op
registrations after the ``operator torchvision::nms does not exist`` failure), or a skip naming what is
missing. timm and transformers import torchvision when it is present, so torchvision is imported first.
"""

from __future__ import annotations

import importlib

import pytest

from nft_deploy.compat import import_torchvision


def need(library: str):
    """The test-only ``library`` (torchvision, timm, transformers), or skip the test naming it."""
    if import_torchvision() is None and library in ("torchvision", "timm"):  # timm needs torchvision
        pytest.skip(f"{library}: torchvision is not installed (a test-only dependency of tests/zoo)")
    try:
        return importlib.import_module(library)
    except ModuleNotFoundError:
        pytest.skip(f"{library} is not installed (a test-only dependency of tests/zoo)")


@pytest.fixture(scope="session")
def library():
    """``library(name)``: a test-only library, or a skip naming it."""
    return need
