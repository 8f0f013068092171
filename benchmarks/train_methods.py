"""Benchmark: every training method and ablation on LeNet-5 / mnist-5k at sigma 0.3 (nft_reference).

Run by hand (not in CI):  .venv/bin/python benchmarks/train_methods.py [--epochs 30] [--seeds 0,1,2]

For each method and seed: clean test accuracy, torch Monte Carlo accuracy over --chips programmed chips
(chip seed 0 for every model, so all models meet the same chips: a paired comparison), seconds per epoch
and the ratio of the method's optimiser-step time to noise injection's (same seed). A short step-time
probe also times OVF with its extra passes batched by torch.func.vmap against the plain loop.
Writes benchmarks/results/train_methods.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nft_deploy.data import load_data
from nft_deploy.models import build_model
from nft_deploy.profiles import load_profile
from nft_deploy.training import NoisyModel, TrainConfig, make_method, torch_monte_carlo, train

RESULTS = Path(__file__).parent / "results"
# (row label, method, extra TrainConfig fields)
VARIANTS = [
    ("plain", "plain", {}),
    ("noise_injection", "noise_injection", {}),
    ("noise_injection draws=4 (OVF compute)", "noise_injection", {"draws": 4}),
    ("temperature T=4 (OVF without feedback)", "temperature", {}),
    ("correctnet", "correctnet", {}),
    ("ovf beta=1e-3", "ovf", {}),
    ("irs beta=1e-2", "irs", {}),
]


def run(epochs: int, seeds: list[int], chips: int, sigma: float) -> list[dict]:
    data = load_data("mnist-5k")
    rows = []
    for label, method, extra in VARIANTS:
        for seed in seeds:
            t0 = time.perf_counter()
            cfg = TrainConfig(model="lenet5", data="mnist-5k", method=method, profile="nft_reference", sigma=sigma,
                              epochs=epochs, batch_size=128, lr=1e-3, seed=seed, progress=False, **extra)
            r = train(cfg, data=data)
            mc = torch_monte_carlo(r.model, cfg.resolved_profile(), data.x_test, data.y_test, chips=chips, seed=0)
            rows.append({"variant": label, "method": method, "seed": seed, "clean_acc": r.metrics["clean_acc"],
                         "mc_mean": mc.mean, "mc_std": mc.std, "mc_p05": float(np.percentile(mc.accuracies, 5)),
                         "seconds_per_epoch": r.metrics["seconds_per_epoch"], "step_ms": r.metrics["step_ms"]})
            print(f"{label:42s} seed {seed}: clean {100 * r.metrics['clean_acc']:.2f}  MC {100 * mc.mean:.2f} "
                  f"+/- {100 * mc.std:.2f}  {r.metrics['step_ms']:.1f} ms/step  ({time.perf_counter() - t0:.0f}s)",
                  file=sys.stderr, flush=True)
    return rows


def step_probe(data, sigma: float, rounds: int = 5, steps: int = 6) -> dict:
    """Optimiser-step time (ms, median) of every variant plus OVF batched with vmap, timed in interleaved
    rounds so that a load that changes over minutes hits every variant alike."""
    x, y = torch.as_tensor(data.x_train[:128]), torch.as_tensor(data.y_train[:128])
    prof = load_profile("nft_reference").with_sigma(sigma)
    variants = [(label, method, {**extra, "batched": False}) for label, method, extra in VARIANTS]
    variants.append(("ovf beta=1e-3, vmap", "ovf", {"batched": True}))
    steppers = {label: _stepper(method, extra, prof, x, y) for label, method, extra in variants}
    times = {label: [] for label in steppers}
    for r in range(rounds + 1):
        for label, step in steppers.items():
            t = time.perf_counter()
            for _ in range(steps):
                step()
            if r > 0:  # round 0 warms up
                times[label].append((time.perf_counter() - t) / steps)
    return {label: 1000 * float(np.median(v)) for label, v in times.items()}


def _stepper(method: str, extra: dict, prof, x, y):
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, num_classes=10, input_size=28)
    net = NoisyModel(model, prof, torch.Generator().manual_seed(0), x[:2])
    m = make_method(TrainConfig(method=method, **extra), net, x, 10, "lenet5")
    opt = torch.optim.Adam(list(model.parameters()) + m.parameters(), 1e-3)

    return training_step(m, net, x, y, opt)


def summarise(result: dict) -> list[dict]:
    rows = result["rows"]
    probe = result["probe"]
    table = []
    for label, _, _ in VARIANTS:
        rs = [r for r in rows if r["variant"] == label]
        means = np.array([r["mc_mean"] for r in rs])
        table.append({
            "variant": label,
            "clean": 100 * float(np.mean([r["clean_acc"] for r in rs])),
            "mc_mean": 100 * float(means.mean()),
            "mc_seed_std": 100 * float(means.std(ddof=1)) if len(rs) > 1 else 0.0,
            "mc_chip_std": 100 * float(np.mean([r["mc_std"] for r in rs])),
            "mc_p05": 100 * float(np.mean([r["mc_p05"] for r in rs])),
            "sec_epoch": float(np.mean([r["seconds_per_epoch"] for r in rs])),
            "step_ms_probe": probe[label],
            "step_ratio": probe[label] / probe["noise_injection"],
        })
    return table


def write(result: dict, args, wall: float) -> None:
    table = summarise(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Training methods: LeNet-5 on mnist-5k, sigma 0.3 (nft_reference)",
        "",
        f"{args.epochs} epochs, Adam lr 1e-3, cosine schedule, batch 128, seeds {args.seeds}; 4,000 train / 1,000 "
        f"test images. Monte Carlo: {args.chips} chips, chip seed 0 for every model (paired), torch Monte Carlo "
        "(weights only, no read noise). MC mean: mean over seeds of each model's chip-mean (+/- std over "
        "seeds); chip std: mean over seeds of the std over chips (ddof=1); p5: 5th percentile of chips.",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; the 2 cores were shared with other jobs (load average {args.load_start[0]:.1f} at "
        f"start, {os.getloadavg()[0]:.1f} at end), so times are indicative. Wall time {wall / 60:.1f} min.",
        "",
        "| method | clean acc % | MC acc % (mean +/- seed std) | chip std % | MC p5 % | s / epoch | step time / noise injection |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in table:
        lines.append(f"| {t['variant']} | {t['clean']:.2f} | {t['mc_mean']:.2f} +/- {t['mc_seed_std']:.2f} | "
                     f"{t['mc_chip_std']:.2f} | {t['mc_p05']:.2f} | {t['sec_epoch']:.2f} | {t['step_ratio']:.2f}x |")
    p = result["probe"]
    vm = p["ovf beta=1e-3, vmap"]
    lines += [
        "",
        "s / epoch: training steps only, measured during the runs above (load varied). Step time / noise "
        "injection: a separate probe, batch 128, every variant timed in 5 interleaved rounds of 6 steps "
        f"(median), extra passes looped: noise injection {p['noise_injection']:.1f} ms/step. OVF with its 3 "
        f"extra passes batched by torch.func.vmap: {vm:.1f} ms/step ({vm / p['noise_injection']:.2f}x), slower "
        "than the loop on this CPU, so the loop is the CPU default (vmap stays the default on CUDA).",
        "",
    ]
    (RESULTS / "train_methods.md").write_text("\n".join(lines))
    (RESULTS / "train_methods.json").write_text(json.dumps(
        {"epochs": args.epochs, "seeds": args.seeds, "threads": args.threads, "load_start": args.load_start, "chips": args.chips, "sigma": args.sigma, "wall_s": wall,
         "table": table, **result}, indent=2) + "\n")
    plot(table)
    print("\n".join(lines))


def plot(table: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    labels = [t["variant"] for t in table]
    ax.barh(labels, [t["mc_mean"] for t in table], xerr=[t["mc_seed_std"] for t in table], color="tab:blue",
            label="Monte Carlo (mean over seeds)")
    ax.scatter([t["clean"] for t in table], labels, color="k", marker="|", s=200, label="clean", zorder=3)
    lo = min(t["mc_mean"] for t in table) - 10
    ax.set_xlim(max(0, lo), 100)
    ax.set_xlabel("test accuracy % (LeNet-5, mnist-5k, sigma 0.3)")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(RESULTS / "train_methods.png", dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--chips", type=int, default=100)
    ap.add_argument("--sigma", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: steadier step-time ratios on a CPU shared with other jobs)")
    ap.add_argument("--probe-only", action="store_true",
                    help="only re-time the steps; reuse the accuracy rows of results/train_methods.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.load_start = os.getloadavg()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    if args.probe_only:  # re-time the steps, keep the accuracy rows of the last full run
        old = json.loads((RESULTS / "train_methods.json").read_text())
        for k in ("epochs", "seeds", "chips", "sigma", "load_start"):
            setattr(args, k, old[k])
        result = {"rows": old["rows"], "probe": step_probe(load_data("mnist-5k"), args.sigma)}
        wall = old["wall_s"]
    else:
        result = {"rows": run(args.epochs, args.seeds, args.chips, args.sigma)}
        result["probe"] = step_probe(load_data("mnist-5k"), args.sigma)
        wall = time.perf_counter() - t0
    write(result, args, wall)


def training_step(method, net, x, y, opt):
    """One optimiser step of ``method`` on the batch (x, y), as a closure to time."""

    def step():
        loss = method.loss(net, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


if __name__ == "__main__":
    main()
