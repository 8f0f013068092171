"""nft-deploy: Negative Feedback Training for noisy compute-in-memory accelerators, from training to a
deployment verdict.

The public API at a glance (heavy parts import lazily):

- device profiles: ``load_profile``, ``list_profiles``, ``DeviceProfile``
- the noise model: ``NoiseModel``
- errors: ``NftDeployError`` and its children in ``nft_deploy.errors``
"""

from __future__ import annotations

__version__ = "0.1.0"

from nft_deploy.errors import NftDeployError, ProfileError
from nft_deploy.profiles import DeviceProfile, list_profiles, load_profile


def __getattr__(name):
    # Lazy: importing torch costs seconds; `nft-deploy profiles list` should not pay it.
    if name == "NoiseModel":
        from nft_deploy.noise import NoiseModel

        return NoiseModel
    raise AttributeError(f"module 'nft_deploy' has no attribute {name!r}")


__all__ = ["DeviceProfile", "NftDeployError", "NoiseModel", "ProfileError", "__version__", "list_profiles", "load_profile"]
