"""Progress bars of the evaluation: ``chip_progress`` from the project's one helper, ``nft_deploy.progress``."""

from __future__ import annotations

from nft_deploy.progress import chip_progress

__all__ = ["chip_progress"]
