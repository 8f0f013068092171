"""Benchmark of the ORT Monte Carlo evaluator (run by hand; writes benchmarks/results/evaluate.{md,json}).

LeNet-5 and VGG-8 (width 0.25) on the Fashion-MNIST test set (10,000 images, untrained weights: timing
only), nft_reference profile, 64 chips, side by side in one run:

- clean: one ORT pass over the same data (the clean graph, session build included);
- fold: the evaluator's default for conv nets (workers=1, all cores as intra-op threads), all chips;
- feed, fold x2 (2 worker processes x 1 thread): the alternatives, on ``--alt-chips`` chips;
- torch: a plain PyTorch loop drawing the same chips (``training.torch_monte_carlo``), timed on
  ``--torch-chips`` chips and reported per chip (its cost per chip is constant).

Targets (issue 5): cost per chip <= 1.3x the clean pass, >= 5x faster than the PyTorch loop.

    .venv/bin/python benchmarks/evaluate.py [--chips 64] [--images 10000] [--torch-chips 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from nft_deploy.data import load_data
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.runner import EvalConfig, clean_pass, run_monte_carlo
from nft_deploy.export import export_model
from nft_deploy.models import build_model
from nft_deploy.profiles import load_profile
from nft_deploy.training.montecarlo import torch_monte_carlo

RESULTS = Path(__file__).parent / "results"
MODELS = {"lenet5": {"width": 1.0, "input_size": 28}, "vgg8": {"width": 0.25, "input_size": 28}}


def bench_model(name: str, kwargs: dict, x: np.ndarray, y: np.ndarray, args) -> dict:
    torch.manual_seed(0)
    module = build_model(name, **kwargs).eval()
    profile = load_profile("nft_reference")
    proto = export_model(module, profile=profile, input_shape=tuple(x.shape[1:])).model
    model = load_deployed(proto)
    cores = os.cpu_count() or 1
    out = {"model": name, "kwargs": kwargs, "params": sum(p.numel() for p in module.parameters()),
           "images": len(y), "chips": args.chips}

    clean_pass(model, x[:500], y[:500], args.batch_size, cores)  # warm-up
    t = time.perf_counter()
    clean_pass(model, x, y, args.batch_size, cores)
    out["clean_s"] = time.perf_counter() - t

    for label, strategy, workers in (("fold", "fold", 1), ("feed", "feed", 1), ("fold_x2", "fold", 2)):
        if workers > cores:
            continue
        chips = args.chips if label == "fold" else args.alt_chips
        out[f"{label}_chips"] = chips
        cfg = EvalConfig(chips=chips, strategy=strategy, workers=workers, batch_size=args.batch_size, quiet=True)
        timings = {}
        r = run_monte_carlo(model, x, y, cfg, data_name="fashion-mnist", timings=timings)
        out[f"{label}_s"] = timings["chips_s"]
        out[f"{label}_per_chip_s"] = timings["chips_s"] / chips  # worker start-up included
        out[f"{label}_accuracy"] = r.accuracy.mean

    torch.set_num_threads(cores)
    t = time.perf_counter()
    tm = torch_monte_carlo(module, profile, x, y, chips=args.torch_chips, batch_size=args.batch_size)
    out["torch_per_chip_s"] = (time.perf_counter() - t) / args.torch_chips
    out["torch_accuracy_first_chips"] = tm.mean

    best = min((k for k in ("fold", "feed", "fold_x2") if f"{k}_per_chip_s" in out), key=lambda k: out[f"{k}_per_chip_s"])
    out["best"] = best
    out["auto_strategy"] = "fold" if model.has_conv else "feed"
    out["per_chip_vs_clean"] = out[f"{best}_per_chip_s"] / out["clean_s"]
    out["speedup_vs_torch"] = out["torch_per_chip_s"] / out[f"{best}_per_chip_s"]
    out["img_chip_per_s"] = len(y) / out[f"{best}_per_chip_s"]
    return out


def markdown(rows: list[dict], env: dict) -> str:
    lines = ["# Evaluator benchmark", "",
             f"{env['cpu']}, {env['cores']} cores, onnxruntime {env['onnxruntime']}, torch {env['torch']}; "
             f"load average {env['load_average_1min']['start']:.1f} -> {env['load_average_1min']['end']:.1f}; "
             f"fashion-mnist test images, nft_reference profile, untrained weights. Per-chip cost = time of the chip loop "
             "(worker start-up included) / chips. Targets: per chip <= 1.3x one clean pass, >= 5x faster than PyTorch.", "",
             "| model | params | clean pass s | fold s/chip | feed s/chip | fold 2x1 s/chip | torch s/chip | best "
             "| best / clean | torch / best | img*chip/s |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['clean_s']:.3f} | {r['fold_per_chip_s']:.3f} | "
                     f"{r['feed_per_chip_s']:.3f} | {r.get('fold_x2_per_chip_s', float('nan')):.3f} | "
                     f"{r['torch_per_chip_s']:.3f} | {r['best']} | {r['per_chip_vs_clean']:.2f}x | "
                     f"{r['speedup_vs_torch']:.1f}x | {r['img_chip_per_s']:,.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=64)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--torch-chips", type=int, default=8)
    ap.add_argument("--alt-chips", type=int, default=8, help="chips for the feed and 2-worker variants")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--models", default="lenet5,vgg8")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    ds = load_data("fashion-mnist")
    x, y = ds.x_test[: args.images], ds.y_test[: args.images]
    rows = []
    for name in args.models.split(","):
        rows.append(bench_model(name, MODELS[name], x, y, args))
        print(json.dumps(rows[-1]), flush=True)
    env = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "onnxruntime": ort.__version__,
           "torch": torch.__version__, "args": vars(args),
           "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "evaluate.json").write_text(json.dumps({"env": env, "results": rows}, indent=2) + "\n")
    (RESULTS / "evaluate.md").write_text(markdown(rows, env))
    print(markdown(rows, env))


if __name__ == "__main__":
    main()
