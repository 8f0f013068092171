"""``nft-deploy demo``: the main job end to end on built-in data (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path

import click

from nft_deploy.cli.notes import notes
from nft_deploy.demo import DEMO_METHODS, DemoConfig, run_demo
from nft_deploy.training.config import INITS


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Folder for checkpoints, ONNX models and the report.")
@click.option("--profile", default="nft_reference", show_default=True, help="Device profile (name or path).")
@click.option("--sigma", type=float, default=DemoConfig.sigma, show_default=True, help="Programming sigma (profile unit).")
@click.option("--init", type=click.Choice(INITS), default=DemoConfig.init, show_default=True,
              help="Weight init; under kaiming (the NFT reference's) noise injection barely trains at the demo's sigma.")
@click.option("--methods", default=",".join(DEMO_METHODS), show_default=True,
              help="Comma-separated training methods to compare; the first is the baseline.")
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--chips", type=int, default=100, show_default=True, help="Monte Carlo chips per model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quick", is_flag=True, help="A one-minute smoke run: 1 epoch on 1,000 images, 20 chips.")
@click.option("--quiet", is_flag=True)
def demo(out, profile, sigma, init, methods, epochs, chips, seed, quick, quiet):
    """Train LeNet-5 on MNIST-5k with noise injection, temperature only, OVF and IRS; export each to a
    CIM-deployed ONNX model; evaluate all on the same Monte Carlo chips; print the comparison and write the
    report."""
    cfg = DemoConfig(out=out, profile=profile, sigma=sigma, init=init, methods=tuple(m.strip() for m in methods.split(",")),
                     epochs=1 if quick else epochs, chips=20 if quick else chips, seed=seed,
                     limit_train=1000 if quick else None, quiet=quiet)
    with notes():
        run_demo(cfg)
