"""Benchmark: where noise injection fails to converge and whether NFT (OVF, IRS) does (a regime map).

Run by hand (not in CI), resumable: every finished run is appended to results/regime_map.jsonl and skipped
when the same command runs again, so an interrupted map continues where it stopped.

    .venv/bin/python benchmarks/regime_map.py --seeds 0                      # one seed per cell
    .venv/bin/python benchmarks/regime_map.py --edge-seeds 0,1,2,3,4         # 5 seeds where convergence is mixed
    .venv/bin/python benchmarks/regime_map.py --render                       # tables and plots from the runs
    .venv/bin/python benchmarks/regime_map.py --setting lenet5 ...           # LeNet-5: regime_map_lenet5.*
    .venv/bin/python benchmarks/regime_map.py --setting lenet5-fashion ...   # Fashion-MNIST: ..._lenet5_fashion.*

Cells: method x sigma x init on VGG-8 width 1/8, mnist-5k, Adam 1e-3, cosine, batch 128 (the issue's
protocol; 20 epochs by default). Each run's deployed accuracy is a torch Monte Carlo over --chips chips
with chip seed 0 for every run (paired chips). A run *converged* by ``nft_deploy.training.protocol.converged``:
final training loss <= ln(10) - 0.5 and Monte Carlo accuracy >= 2 x chance. Convergence per cell is k/n with
a Wilson 95% interval; accuracy is the mean over all seeds and over converged seeds only.

``--edge-seeds`` adds seeds at every (sigma, init) where the runs so far disagree (some methods converge and
some do not, or one method's seeds split): the edge, where the comparison is decided.
Writes results/regime_map.{jsonl,md,json,png}.
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
from nft_deploy.evaluation.metrics import t_quantile
from nft_deploy.training import TrainConfig, torch_monte_carlo, train
from nft_deploy.training.protocol import converged, wilson_interval

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "regime_map.jsonl"
METHODS = {  # label -> TrainConfig fields
    "plain": {"method": "plain"},
    "noise_injection": {"method": "noise_injection"},
    "noise_injection x4": {"method": "noise_injection", "draws": 4},
    "temperature": {"method": "temperature"},
    "ovf": {"method": "ovf", "ovf_feedback_grad": "full"},
    "ovf detached": {"method": "ovf", "ovf_feedback_grad": "none"},
    "irs": {"method": "irs"},
    "noise_injection warm-up": {"method": "noise_injection", "sigma_warmup": 5},
    "temperature warm-up": {"method": "temperature", "sigma_warmup": 5},  # the control for OVF warm-up
    "ovf warm-up": {"method": "ovf", "ovf_feedback_grad": "full", "sigma_warmup": 5},
}
SIGMAS = (0.10, 0.15, 0.20, 0.25, 0.30, 0.35)
SETTINGS = {  # --setting -> (TrainConfig fields, the md header's words); results regime_map[_<setting>].*
    "vgg8": ({"model": "vgg8", "width": 0.125, "data": "mnist-5k"}, "VGG-8 width 1/8, mnist-5k"),
    "lenet5": ({"model": "lenet5", "width": 1.0, "data": "mnist-5k"}, "LeNet-5, mnist-5k"),
    "lenet5-fashion": ({"model": "lenet5", "width": 1.0, "data": "fashion-mnist", "limit_train": 5000,
                        "limit_test": 1000}, "LeNet-5, Fashion-MNIST (first 5,000 training and 1,000 test images)"),
}
SETTING = "vgg8"
INITS = ("default", "kaiming")


def key(row: dict) -> tuple:
    return row["method"], round(row["sigma"], 4), row["init"], row["seed"], row["epochs"]


def done_runs() -> list[dict]:
    return [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()] if RUNS.exists() else []


def run_one(label: str, sigma: float, init: str, seed: int, epochs: int, chips: int, data) -> dict:
    t0 = time.perf_counter()
    cfg = TrainConfig(**SETTINGS[SETTING][0], profile="nft_reference", sigma=sigma, init=init, epochs=epochs, batch_size=128, lr=1e-3, seed=seed, progress=False, **METHODS[label])
    r = train(cfg, data=data)
    mc = torch_monte_carlo(r.model, cfg.resolved_profile(), data.x_test, data.y_test, chips=chips, seed=0)
    row = {"method": label, "sigma": sigma, "init": init, "seed": seed, "epochs": epochs, "chips": chips,
           "loss": r.metrics["loss"], "clean_acc": r.metrics["clean_acc"], "mc_mean": mc.mean, "mc_std": mc.std,
           "mc_p05": float(np.percentile(mc.accuracies, 5)), "seconds": time.perf_counter() - t0,
           "step_ms": r.metrics["step_ms"],
           "max_noise_to_rms": max((v["noise_to_rms"] for v in r.history[0].layers.values()), default=0.0)}
    row["converged"] = converged(row["loss"], data.num_classes, row["mc_mean"])
    return row


def edge_cells(rows: list[dict]) -> set[tuple[float, str]]:
    """(sigma, init) where the runs disagree: some converged and some did not."""
    seen: dict[tuple[float, str], set[bool]] = {}
    for r in rows:
        seen.setdefault((round(r["sigma"], 4), r["init"]), set()).add(bool(r["converged"]))
    return {cell for cell, outcomes in seen.items() if len(outcomes) == 2}


def summarise(rows: list[dict]) -> list[dict]:
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["init"], r["method"], round(r["sigma"], 4)), []).append(r)
    out = []
    for (init, method, sigma), rs in sorted(cells.items()):
        k, n = sum(bool(r["converged"]) for r in rs), len(rs)
        conv = [r["mc_mean"] for r in rs if r["converged"]]
        out.append({"init": init, "method": method, "sigma": sigma, "converged": k, "runs": n,
                    "wilson95": wilson_interval(k, n), "mc_mean": float(np.mean([r["mc_mean"] for r in rs])),
                    "mc_mean_converged": float(np.mean(conv)) if conv else None,
                    "loss": float(np.mean([r["loss"] for r in rs])),
                    "minutes": float(np.mean([r["seconds"] for r in rs])) / 60})
    return out


def compact_cell(rs: list[dict]) -> str:
    """The README's cell: one seed's Monte Carlo accuracy % (* when it did not converge); several seeds' mean
    with a 95% t-interval over seeds, converged k/n and its Wilson 95% interval."""
    acc = [100 * r["mc_mean"] for r in rs]
    k = sum(bool(r["converged"]) for r in rs)
    if len(rs) == 1:
        return f"{acc[0]:.1f}" + ("" if k else "*")
    half = t_quantile(0.975, len(rs) - 1) * float(np.std(acc, ddof=1)) / np.sqrt(len(rs))
    lo, hi = wilson_interval(k, len(rs))
    return f"{np.mean(acc):.1f} ± {half:.1f}, {k}/{len(rs)} [{lo:.2f}, {hi:.2f}]"


def compact_tables(rows: list[dict]) -> list[str]:
    """One Markdown table per init in the README's form (``compact_cell``)."""
    lines = []
    for init in INITS:
        sub = [r for r in rows if r["init"] == init]
        if not sub:
            continue
        sigmas = sorted({round(r["sigma"], 4) for r in sub})
        lines += [f"### init {init} (README form)", "",
                  "| method | " + " | ".join(f"sigma {s:.2f}" for s in sigmas) + " |", "|---|" + "---|" * len(sigmas)]
        for method in METHODS:
            cells = [[r for r in sub if r["method"] == method and round(r["sigma"], 4) == s] for s in sigmas]
            if any(cells):
                lines.append(f"| {method} | " + " | ".join(compact_cell(c) if c else "-" for c in cells) + " |")
        lines.append("")
    return lines


def render(rows: list[dict]) -> None:
    summary = summarise(rows)
    lines = ["# Regime map: where noisy training converges", "",
             f"{len(rows)} runs ({SETTINGS[SETTING][1]}, nft_reference, Adam 1e-3 cosine, batch 128; epochs "
             f"{sorted({r['epochs'] for r in rows})}; Monte Carlo over {sorted({r['chips'] for r in rows})} paired chips). "
             "Converged: final training loss <= ln 10 - 0.5 and Monte Carlo accuracy >= 20%. k/n converged with a "
             "Wilson 95% interval; MC: mean Monte Carlo accuracy over all seeds (over converged seeds).",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared, torch "
             f"{torch.__version__}. Commands: see the module docstring of benchmarks/regime_map.py.", ""]
    for init in INITS:
        sub = [s for s in summary if s["init"] == init]
        if not sub:
            continue
        sigmas = sorted({s["sigma"] for s in sub})
        lines += [f"## init {init}", "", "| method | " + " | ".join(f"sigma {s:g}" for s in sigmas) + " |",
                  "|---|" + "---|" * len(sigmas)]
        for method in METHODS:
            cells = {s["sigma"]: s for s in sub if s["method"] == method}
            if not cells:
                continue
            row = [method]
            for sg in sigmas:
                c = cells.get(sg)
                if c is None:
                    row.append("-")
                    continue
                lo, hi = c["wilson95"]
                conv = "" if c["mc_mean_converged"] is None else f" ({100 * c['mc_mean_converged']:.1f})"
                row.append(f"{c['converged']}/{c['runs']} [{lo:.2f}, {hi:.2f}] MC {100 * c['mc_mean']:.1f}{conv}")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += compact_tables(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{_stem()}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{_stem()}.json").write_text(json.dumps({"summary": summary}, indent=2) + "\n")
    plot(summary)
    print("\n".join(lines))


def plot(summary: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inits = [i for i in INITS if any(s["init"] == i for s in summary)]
    if not inits:
        return
    fig, axes = plt.subplots(2, len(inits), figsize=(6 * len(inits) + 2, 8), squeeze=False)
    for j, init in enumerate(inits):
        for method in METHODS:
            cells = sorted((s for s in summary if s["init"] == init and s["method"] == method), key=lambda s: s["sigma"])
            if not cells:
                continue
            jitter = 0.004 * (list(METHODS).index(method) - len(METHODS) / 2)  # methods side by side
            x = [c["sigma"] + jitter for c in cells]
            p = [c["converged"] / c["runs"] for c in cells]
            # an interval only where a cell has several seeds (one seed's Wilson interval says little)
            err = np.array([[pi - c["wilson95"][0], c["wilson95"][1] - pi] if c["runs"] > 1 else [0.0, 0.0]
                            for pi, c in zip(p, cells, strict=True)]).T
            axes[0][j].errorbar(x, p, yerr=err, marker="o", capsize=3, label=method)
            axes[1][j].plot([c["sigma"] for c in cells], [100 * c["mc_mean"] for c in cells], marker="o", label=method)
        axes[0][j].set(title=f"init {init}: convergence probability (Wilson 95%)", xlabel="sigma", ylim=(-0.05, 1.05))
        axes[1][j].set(title=f"init {init}: Monte Carlo accuracy, mean over seeds", xlabel="sigma", ylabel="%")
    axes[1][-1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{_stem()}.png", dpi=110)
    plt.close(fig)


def _stem() -> str:
    return "regime_map" if SETTING == "vgg8" else f"regime_map_{SETTING.replace('-', '_')}"


def main() -> None:
    global RESULTS, RUNS, SETTING
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated labels of METHODS")
    ap.add_argument("--sigmas", default=",".join(f"{s:g}" for s in SIGMAS))
    ap.add_argument("--inits", default=",".join(INITS))
    ap.add_argument("--seeds", default="0", help="seeds for every cell")
    ap.add_argument("--edge-seeds", default=None, help="seeds added at the (sigma, init) cells where runs disagree")
    ap.add_argument("--setting", choices=list(SETTINGS), default=SETTING, help="model and data (vgg8: the issue's)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--chips", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--render", action="store_true", help="only write md/json/png from the runs so far")
    ap.add_argument("--results", default=str(RESULTS), help="folder of regime_map.* (a trial run: elsewhere)")
    args = ap.parse_args()
    SETTING = args.setting
    RESULTS = Path(args.results)
    RUNS = RESULTS / f"{_stem()}.jsonl"
    if args.render:
        return render(done_runs())
    torch.set_num_threads(args.threads)
    fields = SETTINGS[SETTING][0]
    data = load_data(fields["data"], limit_train=fields.get("limit_train"), limit_test=fields.get("limit_test"))
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    sigmas = [float(s) for s in args.sigmas.split(",")]
    inits = [i for i in args.inits.split(",") if i]
    todo = [(m, s, i, int(seed)) for seed in args.seeds.split(",") if seed for i in inits for s in sigmas
            for m in methods]
    if args.edge_seeds:
        edges = edge_cells(done_runs())
        todo += [(m, s, i, int(seed)) for seed in args.edge_seeds.split(",") for (s, i) in sorted(edges)
                 if s in sigmas and i in inits for m in methods]
    done = {key(r) for r in done_runs()}
    todo = [t for t in dict.fromkeys(todo) if (t[0], round(t[1], 4), t[2], t[3], args.epochs) not in done]
    print(f"{len(todo)} runs to do ({len(done)} done)", file=sys.stderr, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for n, (label, sigma, init, seed) in enumerate(todo, 1):
        row = run_one(label, sigma, init, seed, args.epochs, args.chips, data)
        with RUNS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[{n}/{len(todo)}] {label:24s} sigma {sigma:.2f} {init:8s} seed {seed}: loss {row['loss']:.3f} "
              f"MC {100 * row['mc_mean']:.1f} converged {row['converged']}  ({row['seconds']:.0f}s)",
              file=sys.stderr, flush=True)
    render(done_runs())


if __name__ == "__main__":
    main()
