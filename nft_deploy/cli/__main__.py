"""``python -m nft_deploy.cli`` (and ``torchrun -m nft_deploy.cli train ...``)."""

from nft_deploy.cli import run

run()
