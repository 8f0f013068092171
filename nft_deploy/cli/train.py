"""``nft-deploy train``: a thin click layer over ``nft_deploy.training.train``."""

from __future__ import annotations

import click

from nft_deploy.errors import ConfigError
from nft_deploy.profile_types import SIGMA_HELP


def _floats(flag: str, text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a comma-separated list of numbers") from None


def _ints(flag: str, text: str | None) -> tuple[int, ...] | None:
    vals = _floats(flag, text)
    if vals is not None and any(v != int(v) or v < 1 for v in vals):
        raise ConfigError(f"{flag}: {text!r}: give positive integers, comma-separated")
    return None if vals is None else tuple(int(v) for v in vals)


@click.command()
@click.option("--model", default="lenet5", show_default=True, help="Built-in model: lenet5, vgg8, resnet18.")
@click.option("--width", type=float, default=None, help="Width multiplier (default: the model's own).")
@click.option("--data", default="mnist-5k", show_default=True, help="mnist-5k, fashion-mnist or a .npz path.")
@click.option("--method", default="ovf", show_default=True,
              help="plain, noise_injection, temperature, correctnet, ovf, irs.")
@click.option("--profile", default="nft_reference", show_default=True, help="Device profile: name or JSON path.")
@click.option("--sigma", type=float, default=None, help=SIGMA_HELP)
@click.option("--beta", type=float, default=None, help="Feedback strength (ovf default 1e-3, irs per model).")
@click.option("--draws", type=int, default=1, show_default=True,
              help="noise_injection: average the loss over K noise draws per step.")
@click.option("--ovf-n", type=int, default=3, show_default=True, help="OVF: number of extra forwards N.")
@click.option("--ovf-offsets", default=None, help="OVF: sigma offsets, comma-separated (default 0.15,0.10,0.05).")
@click.option("--ovf-feedback-grad", default="none", show_default=True,
              help="OVF: none: the N extra forwards run without gradient, as constants in the loss (same draws "
                   "and loss value up to rounding, ~1.8-2.2x a noise-injection step instead of ~3.9x); full: the "
                   "reference, backpropagate through them.")
@click.option("--gammas", default=None, help="OVF/IRS feedback weights, comma-separated (default 10^-(n-1)).")
@click.option("--temperature", type=float, default=None, help="temperature method: T in CE(z/T) (default N+1).")
@click.option("--irs-layers", default=None, help="IRS: module paths, comma-separated, shallowest first.")
@click.option("--irs-pool", default=None, help="IRS: pool size per head, comma-separated.")
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True,
              help="Per process: under torchrun one step sees WORLD_SIZE x this many samples.")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--schedule", default="cosine", show_default=True, help="cosine or constant.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True,
              help="cpu or cuda (under torchrun each rank uses cuda:LOCAL_RANK).")
@click.option("--dist-backend", default=None,
              help="torchrun only: process-group backend (default: nccl on CUDA, gloo on CPU).")
@click.option("--expect-world-size", type=int, default=None,
              help="Fail unless torchrun started exactly N processes (WORLD_SIZE; 1 without torchrun).")
@click.option("--batched/--sequential", default=None,
              help="Run the extra noisy passes batched with vmap or one by one (default: vmap on CUDA only).")
@click.option("--limit-train", type=int, default=None, help="Use the first N training samples.")
@click.option("--limit-test", type=int, default=None, help="Use the first N test samples.")
@click.option("-o", "--output", default="model.pt", show_default=True,
              help="Checkpoint path (missing folders are created; written atomically).")
@click.option("--log", "log_file", default=None, help="JSON training log (default: next to the checkpoint).")
@click.option("--mc-chips", type=int, default=0, show_default=True,
              help="After training: torch Monte Carlo over N chips on the test set.")
@click.option("--quiet", is_flag=True, help="No progress bars and no per-epoch lines.")
def train(model, width, data, method, profile, sigma, beta, draws, ovf_n, ovf_offsets, ovf_feedback_grad, gammas,
          temperature, irs_layers, irs_pool, epochs, batch_size, lr, schedule, seed, device, dist_backend,
          expect_world_size, batched, limit_train, limit_test, output, log_file, mc_chips, quiet):
    """Train a model for a noisy CIM device (NFT: OVF, IRS, or a baseline) and write a checkpoint.

    Runs unchanged under torchrun --nproc_per_node N (DistributedDataParallel; rank 0 prints and writes).
    """
    from nft_deploy.training import TrainConfig
    from nft_deploy.training import train as train_fn

    config = TrainConfig(
        model=model, width=width, data=data, limit_train=limit_train, limit_test=limit_test, method=method,
        beta=beta, draws=draws, ovf_n=ovf_n, ovf_offsets=_floats("--ovf-offsets", ovf_offsets),
        ovf_feedback_grad=ovf_feedback_grad, gammas=_floats("--gammas", gammas), temperature=temperature,
        irs_layers=tuple(s.strip() for s in irs_layers.split(",") if s.strip()) if irs_layers else None,
        irs_pool=_ints("--irs-pool", irs_pool), batched=batched, profile=profile, sigma=sigma, epochs=epochs,
        batch_size=batch_size, lr=lr, schedule=schedule, seed=seed, device=device, dist_backend=dist_backend,
        expect_world_size=expect_world_size, output=output, log=log_file,
        mc_chips=mc_chips, progress=not quiet,
    )
    result = train_fn(config, on_epoch=None if quiet else lambda m: click.echo(m.line()))
    if result.rank != 0:
        return
    mt = result.metrics
    summary = f"clean {100 * mt['clean_acc']:.2f}%  noisy {100 * mt['noisy_acc']:.2f}%"
    if "mc_mean" in mt:
        summary += f"  Monte Carlo {100 * mt['mc_mean']:.2f}% +/- {100 * mt['mc_std']:.2f} ({int(mt['mc_chips'])} chips)"
    click.echo(f"{result.method['name']}: {summary}")
    click.echo(f"wrote {result.checkpoint} and {result.log}")


__all__ = ["train"]
