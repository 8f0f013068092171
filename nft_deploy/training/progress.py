"""Progress bars of the training: ``Progress`` from the project's one helper, ``nft_deploy.progress``."""

from __future__ import annotations

from nft_deploy.progress import Progress

__all__ = ["Progress"]
