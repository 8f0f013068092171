"""nft_deploy.compat.import_torchvision: torchvision's models import and run on this torch, whether or not
its C++ ops load; None without torchvision; unrelated errors are not swallowed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from nft_deploy import compat

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchvision") is None,
                                reason="torchvision is not installed (optional; used by examples and benchmarks)")

BUILD_A_MODEL = """
import json, sys, torch
from nft_deploy.compat import TORCHVISION_REGISTRATIONS, import_torchvision
tv = import_torchvision()
net = tv.models.mobilenet_v3_small(num_classes=3).eval()
stubbed = [n for n in TORCHVISION_REGISTRATIONS if getattr(sys.modules.get(n), "__file__", None) is None]
print(json.dumps({"shape": list(net(torch.zeros(2, 3, 32, 32)).shape), "stubbed": stubbed,
                  "same": import_torchvision() is tv}))
"""


def test_import_torchvision_builds_and_runs_a_model_in_a_fresh_process():
    done = subprocess.run([sys.executable, "-c", BUILD_A_MODEL], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["shape"] == [2, 3]
    assert out["same"]  # a second call returns the imported module, no second retry
    assert out["stubbed"] in ([], list(compat.TORCHVISION_REGISTRATIONS))  # both stubbed or neither


def test_import_torchvision_is_none_when_torchvision_is_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import raises ModuleNotFoundError('torchvision')
    assert compat.import_torchvision() is None


def test_a_runtime_error_not_about_torchvision_ops_propagates(monkeypatch):
    def broken(name):
        raise RuntimeError("CUDA driver version is insufficient")

    monkeypatch.setattr(compat.importlib, "import_module", broken)
    with pytest.raises(RuntimeError, match="CUDA driver"):
        compat.import_torchvision()


def test_a_missing_dependency_of_torchvision_propagates(monkeypatch):
    def broken(name):
        raise ModuleNotFoundError("No module named 'PIL'", name="PIL")

    monkeypatch.setattr(compat.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="PIL"):
        compat.import_torchvision()
