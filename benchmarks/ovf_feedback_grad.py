"""Benchmark: OVF with ``--ovf-feedback-grad full`` (reference) against ``none`` and noise injection.

Run by hand (not in CI):  .venv/bin/python benchmarks/ovf_feedback_grad.py [--regimes default,refinit]

Two questions, one run:
1. Step time. Every variant takes ``--steps`` optimiser steps per round on the same batch of 128, the
   variants interleaved round by round (round 0 warms up), so load from other jobs hits all alike. The
   ratio to noise injection is taken per round; the table gives its median and quartiles over rounds.
   ``ovf none, NCHW passes (before)`` (step time only) is ``none`` with its constant passes NCHW, the code
   path before they ran channels-last (``NoisyModel.channels_last = False``).
2. Accuracy. Each variant is trained per seed, then torch Monte Carlo over ``--chips`` chips drawn from
   chip seed ``--chip-seed`` (the same chips for every model). Per variant: the mean over seeds of each
   model's chip-mean with a 95% t-interval over seeds; and the paired per-seed difference none - full
   (same seed: same init, batch order and noise draws, only the gradient differs) with its t-interval.

Regimes: ``default`` is LeNet-5 on mnist-5k at sigma 0.3 (nft_reference); ``refinit`` is the reference's
init (VGG-8 width 0.125, kaiming_normal_(mode="fan_out") on every conv/linear weight) at sigma 0.15.
Writes benchmarks/results/ovf_feedback_grad.{md,json,png}; ``--render`` redraws them from the JSON.
``--probe-only`` times the steps alone (no training) and writes benchmarks/results/ovf_feedback_grad_probe.{md,json}:
a longer, steadier step-time probe (``--rounds 20``) than the full run affords.
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
from torch import nn
from train_methods import training_step  # this folder's sibling benchmark

from nft_deploy.data import load_data
from nft_deploy.evaluation.metrics import mean_interval
from nft_deploy.models import VGG8, build_model
from nft_deploy.profiles import load_profile
from nft_deploy.training import NoisyModel, TrainConfig, make_method, torch_monte_carlo, train

RESULTS = Path(__file__).parent / "results"
VARIANTS = {  # label -> TrainConfig fields
    "noise_injection": {"method": "noise_injection"},
    "ovf full": {"method": "ovf", "ovf_feedback_grad": "full"},
    "ovf none": {"method": "ovf", "ovf_feedback_grad": "none"},
}
PROBE_ONLY = {  # step time only: the code path before channels-last constant passes, timed in the same rounds
    "ovf none, NCHW passes (before)": {"method": "ovf", "ovf_feedback_grad": "none", "channels_last": False},
}
REGIMES = {
    "default": {"title": "LeNet-5, sigma 0.3, PyTorch init", "sigma": 0.3},
    "refinit": {"title": "VGG-8 w 0.125, sigma 0.15, reference init", "sigma": 0.15},
}


def build(regime: str, seed: int) -> nn.Module:
    """The regime's model, initialised from ``seed`` (the reference's kaiming fan_out for ``refinit``)."""
    torch.manual_seed(seed)
    if regime == "default":
        return build_model("lenet5", in_channels=1, num_classes=10, input_size=28)
    model = VGG8(in_channels=1, num_classes=10, input_size=28, width=0.125)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
    return model


def step_probe(regime: str, data, rounds: int, steps: int) -> dict:
    """Per-round step times (ms) of every variant, interleaved; round 0 is a warm-up and is dropped."""
    x, y = torch.as_tensor(data.x_train[:128]), torch.as_tensor(data.y_train[:128])
    prof = load_profile("nft_reference").with_sigma(REGIMES[regime]["sigma"])
    steppers = {label: _stepper(build(regime, 0), extra, prof, x, y)
                for label, extra in {**VARIANTS, **PROBE_ONLY}.items()}
    times: dict[str, list[float]] = {label: [] for label in steppers}
    for r in range(rounds + 1):
        for label, step in steppers.items():
            t = time.perf_counter()
            for _ in range(steps):
                step()
            if r > 0:
                times[label].append(1000 * (time.perf_counter() - t) / steps)
    return times


def _stepper(model: nn.Module, extra: dict, prof, x, y):
    extra = dict(extra)
    net = NoisyModel(model.train(), prof, torch.Generator().manual_seed(0), x[:2])
    net.channels_last = extra.pop("channels_last", None)
    m = make_method(TrainConfig(**extra), net, x, 10, None)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    return training_step(m, net, x, y, opt)


def accuracy_rows(regime: str, data, seeds: list[int], epochs: int, chips: int, chip_seed: int, save) -> list[dict]:
    """Train and Monte Carlo every variant per seed (variants interleaved within a seed)."""
    rows = []
    sigma = REGIMES[regime]["sigma"]
    for seed in seeds:
        for label, extra in VARIANTS.items():
            t0 = time.perf_counter()
            cfg = TrainConfig(profile="nft_reference", sigma=sigma, epochs=epochs, batch_size=128, lr=1e-3,
                              seed=seed, progress=False, **extra)
            r = train(cfg, data=data, model=build(regime, seed))
            mc = torch_monte_carlo(r.model, cfg.resolved_profile(), data.x_test, data.y_test, chips=chips,
                                   seed=chip_seed)
            rows.append({"regime": regime, "variant": label, "seed": seed, "epochs": epochs,
                         "clean_acc": r.metrics["clean_acc"], "mc_mean": mc.mean, "mc_std": mc.std,
                         "step_ms_train": r.metrics["step_ms"], "wall_s": time.perf_counter() - t0})
            print(f"{regime} {label:16s} seed {seed}: clean {100 * r.metrics['clean_acc']:.2f}  MC "
                  f"{100 * mc.mean:.2f} +/- {100 * mc.std:.2f}  ({time.perf_counter() - t0:.0f}s)",
                  file=sys.stderr, flush=True)
            save(rows)
    return rows


def t_interval(values) -> tuple[float, float]:
    """Mean and 95% t half-width over ``values`` (NaN half-width for a single value)."""
    ci = mean_interval(values, 0.95)
    return (ci.low + ci.high) / 2, (ci.high - ci.low) / 2 if len(values) > 1 else float("nan")


def summarise(result: dict) -> dict:
    """Per regime: step-time ratios (median, quartiles over rounds) and accuracies with t-intervals."""
    out = {}
    for regime, probe in result["probe"].items():
        ni = np.array(probe["noise_injection"])
        steps = {label: {"median_ms": float(np.median(ts)),
                         "ratio": float(np.median(np.array(ts) / ni)),
                         "ratio_q25": float(np.percentile(np.array(ts) / ni, 25)),
                         "ratio_q75": float(np.percentile(np.array(ts) / ni, 75))} for label, ts in probe.items()}
        rows = [r for r in result["rows"] if r["regime"] == regime]
        acc, per_seed = {}, {}
        for label in VARIANTS:
            rs = sorted((r for r in rows if r["variant"] == label), key=lambda r: r["seed"])
            per_seed[label] = {r["seed"]: 100 * r["mc_mean"] for r in rs}
            mean, half = t_interval(list(per_seed[label].values()))
            acc[label] = {"mc_mean": mean, "ci95": half, "seeds": len(rs),
                          "clean": 100 * float(np.mean([r["clean_acc"] for r in rs])) if rs else float("nan")}
        paired = {}
        for a, b in (("ovf none", "ovf full"), ("ovf none", "noise_injection"), ("ovf full", "noise_injection")):
            common = sorted(set(per_seed[a]) & set(per_seed[b]))
            if common:
                mean, half = t_interval([per_seed[a][s] - per_seed[b][s] for s in common])
                paired[f"{a} - {b}"] = {"mean": mean, "ci95": half, "seeds": len(common)}
        out[regime] = {"steps": steps, "accuracy": acc, "paired": paired}
    return out


def write(result: dict) -> None:
    summary = summarise(result)
    a = result["args"]
    lines = [
        "# OVF --ovf-feedback-grad: full (reference) vs none vs noise injection",
        "",
        f"mnist-5k (4,000 train / 1,000 test), nft_reference profile, Adam lr 1e-3, cosine, batch 128, seeds "
        f"{a['seeds']}. Monte Carlo: {a['chips']} chips from chip seed {a['chip_seed']}, the same chips for every "
        "model; accuracy = mean over seeds of each model's chip-mean, +/- the 95% t-interval over seeds. "
        "Paired: per-seed difference (same init, batch order and noise draws), mean +/- 95% t-interval.",
        f"Step time: batch 128, {a['rounds']} interleaved rounds of {a['steps']} steps after a warm-up round, "
        f"{a['probe_threads']} torch thread(s); ratio to noise injection per round, median [quartiles]. Training "
        f"used {a['threads']} thread(s). Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores shared with other jobs (load {a['load_start']:.1f} at start, {result['load_end']:.1f} at end), "
        f"torch {torch.__version__}. Wall time {result['wall_s'] / 60:.1f} min. A longer step-time probe alone "
        "(``--probe-only``, steadier under load): ovf_feedback_grad_probe.md.",
    ]
    for regime, s in summary.items():
        lines += ["", f"## {REGIMES[regime]['title']} ({regime}, {a['epochs'][regime]} epochs)", "",
                  "| variant | step ms | step / noise injection | clean acc % | MC acc % (95% CI over seeds) |",
                  "|---|---|---|---|---|"]
        for label in VARIANTS:
            st, ac = s["steps"][label], s["accuracy"][label]
            lines.append(f"| {label} | {st['median_ms']:.1f} | {st['ratio']:.2f}x [{st['ratio_q25']:.2f}, "
                         f"{st['ratio_q75']:.2f}] | {ac['clean']:.2f} | {ac['mc_mean']:.2f} +/- {ac['ci95']:.2f} |")
        for label in (lab for lab in s["steps"] if lab not in VARIANTS):
            st = s["steps"][label]
            lines.append(f"| {label} | {st['median_ms']:.1f} | {st['ratio']:.2f}x [{st['ratio_q25']:.2f}, "
                         f"{st['ratio_q75']:.2f}] | (step time only) | |")
        lines += ["", "| paired difference (points) | mean +/- 95% CI | verdict |", "|---|---|---|"]
        for name, p in s["paired"].items():
            lo, hi = p["mean"] - p["ci95"], p["mean"] + p["ci95"]
            verdict = "no difference detected (CI contains 0)" if lo <= 0 <= hi else \
                ("higher" if lo > 0 else "lower") + " (CI excludes 0)"
            lines.append(f"| {name} | {p['mean']:+.2f} +/- {p['ci95']:.2f} [{lo:+.2f}, {hi:+.2f}] | {verdict} |")
    lines.append("")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ovf_feedback_grad.md").write_text("\n".join(lines))
    (RESULTS / "ovf_feedback_grad.json").write_text(json.dumps({**result, "summary": summary}, indent=2) + "\n")
    plot(summary)
    print("\n".join(lines))


def plot(summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, colors = list(VARIANTS), ["tab:gray", "tab:blue", "tab:orange"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(labels)
    for ax, key in zip(axes, ("steps", "accuracy"), strict=True):
        for i, (label, color) in enumerate(zip(labels, colors, strict=True)):
            xs = np.arange(len(summary)) + (i - 1) * width
            if key == "steps":
                st = [s["steps"][label] for s in summary.values()]
                vals = [t["ratio"] for t in st]
                err = [[t["ratio"] - t["ratio_q25"] for t in st], [t["ratio_q75"] - t["ratio"] for t in st]]
            else:
                ac = [s["accuracy"][label] for s in summary.values()]
                vals, err = [t["mc_mean"] for t in ac], [np.nan_to_num(t["ci95"]) for t in ac]
            ax.bar(xs, vals, width, yerr=err, capsize=3, color=color, label=label)
        ticks = [REGIMES[r]["title"].replace(", ", "\n") for r in summary]
        ax.set_xticks(np.arange(len(summary)), ticks, fontsize=8)
    axes[0].axhline(2.0, color="k", ls=":", lw=1, label="target 2x")
    axes[0].set_ylabel("step time / noise injection\n(median, quartiles over rounds)")
    accs = [t["mc_mean"] for s in summary.values() for t in s["accuracy"].values()]
    axes[1].set_ylim(max(0.0, min(accs) - 10), 100)
    axes[1].set_ylabel("Monte Carlo accuracy %\n(mean, 95% CI over seeds)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "ovf_feedback_grad.png", dpi=120)
    plt.close(fig)


def probe_only(regimes: list[str], rounds: int, steps: int, threads: int) -> None:
    """The step-time probe alone, per regime: median ms and ratio to noise injection with quartiles."""
    torch.set_num_threads(threads)
    load, t0, data = os.getloadavg()[0], time.perf_counter(), load_data("mnist-5k")
    probe = {regime: step_probe(regime, data, rounds, steps) for regime in regimes}
    result = {"args": {"regimes": regimes, "rounds": rounds, "steps": steps, "probe_threads": threads,
                       "load_start": load}, "load_end": os.getloadavg()[0], "wall_s": time.perf_counter() - t0,
              "probe": probe}
    lines = ["# OVF --ovf-feedback-grad: step-time probe", "",
             f"Batch 128, {rounds} interleaved rounds of {steps} steps after a warm-up round, {threads} torch "
             f"thread(s); ratio to noise injection per round, median [quartiles]. Machine: "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs (load "
             f"{load:.1f} at start, {result['load_end']:.1f} at end), torch {torch.__version__}. Wall time "
             f"{result['wall_s'] / 60:.1f} min. Accuracy: ovf_feedback_grad.md."]
    for regime, times in probe.items():
        ni = np.array(times["noise_injection"])
        lines += ["", f"## {REGIMES[regime]['title']} ({regime})", "", "| variant | step ms | step / noise injection |",
                  "|---|---|---|"]
        for label, ts in times.items():
            r = np.array(ts) / ni
            lines.append(f"| {label} | {np.median(ts):.1f} | {np.median(r):.2f}x [{np.percentile(r, 25):.2f}, "
                         f"{np.percentile(r, 75):.2f}] |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ovf_feedback_grad_probe.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "ovf_feedback_grad_probe.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regimes", default="default,refinit")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", default="default=10,refinit=10", help="per regime, e.g. default=10,refinit=20")
    for flag, default in (("--chips", 200), ("--chip-seed", 12345), ("--rounds", 7), ("--steps", 4)):
        ap.add_argument(flag, type=int, default=default)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for training and Monte Carlo (2 threads on a shared 2-core CPU thrash)")
    ap.add_argument("--probe-threads", type=int, default=1, help="torch threads of the step-time probe (steadier)")
    ap.add_argument("--render", action="store_true", help="only redraw md/png from results/ovf_feedback_grad.json")
    ap.add_argument("--probe-only", action="store_true", help="only the step-time probe: results/*_probe.{md,json}")
    args = ap.parse_args()
    if args.render:
        return write({k: v for k, v in json.loads((RESULTS / "ovf_feedback_grad.json").read_text()).items()
                      if k != "summary"})
    regimes = [r for r in args.regimes.split(",") if r]
    if args.probe_only:
        return probe_only(regimes, args.rounds, args.steps, args.probe_threads)
    epochs = dict(kv.split("=") for kv in args.epochs.split(","))
    result = {"args": {"regimes": regimes, "seeds": [int(s) for s in args.seeds.split(",")], "chips": args.chips,
                       "chip_seed": args.chip_seed, "rounds": args.rounds, "steps": args.steps,
                       "threads": args.threads, "probe_threads": args.probe_threads,
                       "epochs": {r: int(epochs[r]) for r in regimes}, "load_start": os.getloadavg()[0]},
              "probe": {}, "rows": []}
    t0 = time.perf_counter()

    def save(rows):  # keep what a long run has so far (``--render`` draws it)
        result.update(rows=done + rows, wall_s=time.perf_counter() - t0, load_end=os.getloadavg()[0])
        (RESULTS / "ovf_feedback_grad.json").write_text(json.dumps(result, indent=2) + "\n")

    data, done = load_data("mnist-5k"), []
    for regime in regimes:
        torch.set_num_threads(args.probe_threads)
        result["probe"][regime] = step_probe(regime, data, args.rounds, args.steps)
        torch.set_num_threads(args.threads)
        done += accuracy_rows(regime, data, result["args"]["seeds"], result["args"]["epochs"][regime], args.chips,
                              args.chip_seed, save)
    result.update(rows=done, wall_s=time.perf_counter() - t0, load_end=os.getloadavg()[0])
    write(result)


if __name__ == "__main__":
    main()
