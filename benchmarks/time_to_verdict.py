"""Time to verdict: chips the sequential gate needs against a fixed 200, and its error rate (run by hand;
writes benchmarks/results/time_to_verdict.{md,json,png}).

For the demo's three models (``nft-deploy demo`` output; trained first if missing): one fixed Monte Carlo of
200 chips each (ONNX Runtime, seed 0) gives the chips' real accuracies. Gates are then set at margins
around the truth (the mean, or the 5th percentile, of those 200 chips):

- real: the sequential rule on the real chips in their fixed order (what ``nft-deploy check`` does with
  ``--chips 200``: the stop point is a prefix of the same chips);
- simulated: ``--runs`` repeated runs on chips resampled from the 200 (fixed seed), for the mean chips
  used and the error rate of settled decisions against the truth, with its standard error.

    .venv/bin/python benchmarks/time_to_verdict.py [--models runs/demo] [--runs 2000]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from nft_deploy.evaluation.runner import evaluate
from nft_deploy.evaluation.sequential import GateRule, fraction_below_at_most, mean_at_least, run_looks

RESULTS = Path(__file__).parent / "results"
MODELS = ("noise_injection", "ovf", "irs")
MARGINS = (-0.05, -0.02, -0.005, 0.005, 0.02, 0.05)
CHIPS, ALPHA = 200, 0.05


def _criterion(kind: str, threshold: float):
    if kind == "mean":
        return mean_at_least(f"mean accuracy >= {threshold:.4f}", threshold, lambda c: c.accuracy)
    return fraction_below_at_most(f"5th percentile >= {threshold:.4f}", threshold, 0.05)


def _run(criterion, chips: list[float]) -> tuple[int, str | None]:
    """The gate on these chips in this order: (chips used, settled decision or None)."""
    seen: list = []
    rule = GateRule(lambda clean: [criterion], ALPHA).bind(None)
    out = run_looks(lambda ids: seen.extend(SimpleNamespace(accuracy=chips[i]) for i in ids), lambda: seen,
                    len(chips), 16, rule, ALPHA)
    return out.chips_used, out.decisions.get(criterion.describe)


def _cell(accs: np.ndarray, kind: str, margin: float, runs: int, rng) -> dict:
    truth_value = accs.mean() if kind == "mean" else np.percentile(accs, 5)
    threshold = float(truth_value - margin)  # margin > 0: the model clears the gate by that much
    truth = "pass" if (accs.mean() >= threshold if kind == "mean" else np.mean(accs < threshold) <= 0.05) else "fail"
    crit = _criterion(kind, threshold)
    real_used, real_decision = _run(crit, list(accs))
    used, wrong = [], 0
    for _ in range(runs):
        n, d = _run(crit, list(rng.choice(accs, CHIPS)))
        used.append(n)
        wrong += d is not None and d != truth
    rate = wrong / runs
    return {"criterion": kind, "margin": margin, "threshold": threshold, "truth": truth,
            "real_chips": real_used, "real_decision": real_decision, "mean_chips": float(np.mean(used)),
            "saving": CHIPS / float(np.mean(used)), "error_rate": rate,
            "error_se": math.sqrt(max(rate, 1 / runs) * (1 - rate) / runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=Path("runs/demo"))
    ap.add_argument("--runs", type=int, default=2000)
    args = ap.parse_args()
    if not all((args.models / f"{m}.cim.onnx").is_file() for m in MODELS):
        from nft_deploy.demo import DemoConfig, run_demo

        run_demo(DemoConfig(out=args.models))
    rng = np.random.default_rng(20261130)
    rows, per_model = [], {}
    for m in MODELS:
        r = evaluate(args.models / f"{m}.cim.onnx", "mnist-5k", chips=CHIPS, seed=0, quiet=True)
        accs = np.array([c.accuracy for c in r.per_chip])
        per_model[m] = {"mean": float(accs.mean()), "p5": float(np.percentile(accs, 5)), "std": float(accs.std(ddof=1))}
        for kind in ("mean", "p5"):
            for margin in MARGINS:
                rows.append({"model": m, **_cell(accs, kind, margin, args.runs, rng)})
                print(f"{m:16s} {kind:4s} margin {margin:+.3f}: {rows[-1]['mean_chips']:6.1f} chips, "
                      f"error {rows[-1]['error_rate']:.4f}", flush=True)
    _write(args, rows, per_model)


def _write(args, rows: list[dict], per_model: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "time_to_verdict.json").write_text(json.dumps(
        {"chips_max": CHIPS, "alpha": ALPHA, "runs": args.runs, "models": per_model, "cells": rows}, indent=2) + "\n")
    lines = ["# Time to verdict: the sequential gate against a fixed 200 chips", "",
             f"Demo models on mnist-5k, 200 real chips each (ONNX Runtime, seed 0); gates set at a margin from the "
             f"truth of those chips (margin > 0: the model clears the gate). alpha {ALPHA}, looks at 16, 32, 64, "
             f"128, 200 chips (Bonferroni). Simulated: {args.runs} runs on chips resampled from the 200.", "",
             "| model | gate | margin | truth | chips (real run) | chips (mean, sim.) | saving | error rate (sim.) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gate = "mean" if r["criterion"] == "mean" else "5th pct"
        lines.append(f"| {r['model']} | {gate} >= {r['threshold']:.4f} | {r['margin']:+.3f} | {r['truth']} | "
                     f"{r['real_chips']} ({r['real_decision'] or 'unsettled'}) | {r['mean_chips']:.1f} | "
                     f"{r['saving']:.1f}x | {r['error_rate']:.4f} +- {r['error_se']:.4f} |")
    clear = [r for r in rows if abs(r["margin"]) >= 0.02]
    lines += ["", f"Clear passes and fails (|margin| >= 0.02): mean gates use "
              f"{np.mean([r['mean_chips'] for r in clear if r['criterion'] == 'mean']):.1f} chips on average "
              f"({CHIPS / np.mean([r['mean_chips'] for r in clear if r['criterion'] == 'mean']):.1f}x fewer than "
              f"200), 5th-percentile gates {np.mean([r['mean_chips'] for r in clear if r['criterion'] == 'p5']):.1f}; "
              f"the largest simulated error rate of any cell is {max(r['error_rate'] for r in rows):.4f} "
              f"(alpha {ALPHA})."]
    (RESULTS / "time_to_verdict.md").write_text("\n".join(lines) + "\n")
    _plot(rows)
    print("\n".join(lines))


def _plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, kind, title in ((axes[0], "mean", "mean accuracy gate"), (axes[1], "p5", "5th-percentile gate")):
        for m in MODELS:
            cells = [r for r in rows if r["model"] == m and r["criterion"] == kind]
            ax.plot([r["margin"] for r in cells], [r["mean_chips"] for r in cells], "o-", label=m)
        ax.axhline(CHIPS, color="gray", ls="--", lw=1, label="fixed 200")
        ax.set(title=title, xlabel="margin (truth - threshold)", yscale="log")
    axes[0].set_ylabel("chips to verdict (mean of runs)")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "time_to_verdict.png", dpi=120)


if __name__ == "__main__":
    main()
