"""nft-deploy: Negative Feedback Training for noisy compute-in-memory accelerators, from training to a
deployment verdict.

The public API at a glance (heavy parts import lazily, so ``nft-deploy profiles list`` stays fast):

- device profiles: ``load_profile``, ``list_profiles``, ``DeviceProfile``
- the noise model: ``NoiseModel``
- training: ``train``, ``TrainConfig``, ``torch_monte_carlo``
- the device plan (what every engine reads): ``plan``, ``DevicePlan``
- export: ``export_model``, ``insert_device_nodes``
- evaluation: ``evaluate``, ``compare``, ``check``, ``sweep``, ``EvalConfig``, ``Thresholds``
- the end-to-end demo: ``run_demo``
- errors: ``NftDeployError`` and its children in ``nft_deploy.errors``
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from nft_deploy.errors import NftDeployError, ProfileError
from nft_deploy.profiles import DeviceProfile, list_profiles, load_profile

_LAZY = {
    "NoiseModel": "nft_deploy.noise",
    "train": "nft_deploy.training",
    "TrainConfig": "nft_deploy.training",
    "torch_monte_carlo": "nft_deploy.training",
    "plan": "nft_deploy.planning",
    "DevicePlan": "nft_deploy.device_plan",
    "export_model": "nft_deploy.export",
    "insert_device_nodes": "nft_deploy.export",
    "ExportResult": "nft_deploy.export",
    "evaluate": "nft_deploy.evaluation.runner",
    "EvalConfig": "nft_deploy.evaluation.config",
    "compare": "nft_deploy.evaluation.compare",
    "check": "nft_deploy.evaluation.check",
    "Thresholds": "nft_deploy.evaluation.check",
    "sweep": "nft_deploy.evaluation.sweep",
    "run_demo": "nft_deploy.demo",
    "DemoConfig": "nft_deploy.demo",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nft_deploy' has no attribute {name!r}")


__all__ = ["DeviceProfile", "NftDeployError", "ProfileError", "__version__", "list_profiles", "load_profile",
           *_LAZY]
