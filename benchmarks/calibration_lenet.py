"""LeNet-5 on mnist-5k with 6-bit partial-sum ADCs: full-scale versus calibrated converter ranges (issue 11's
acceptance; run by hand; writes benchmarks/results/calibration_lenet.{md,json}).

Trains (once, if the checkpoint is missing) ``nft-deploy train --model lenet5 --method noise_injection
--profile rram_128x128_adc6 --epochs 3 --data mnist-5k``, exports it on ``rram_128x128_adc6`` (128x128 arrays,
6-bit ADC on every row tile's partial sum) with full-scale ranges and with ``--calibrate mnist-5k`` at each
percentile, and evaluates every export on the same chips (same seed).

    .venv/bin/python benchmarks/calibration_lenet.py [--chips 50] [--percentiles 99.99,99.9,99]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROFILE = "rram_128x128_adc6"
TRAIN = ["train", "--model", "lenet5", "--method", "noise_injection", "--profile", PROFILE, "--epochs", "3",
         "--data", "mnist-5k"]


NOTE = ("Full scale per sample is the default without --calibrate: each converter's range is max |x| of each "
        "sample (an ideal auto-ranging converter, re-ranged per input). A fixed worst case is what an uncalibrated "
        "ADC has: its range is the largest partial sum its array can produce (rows x the DAC's range, the "
        "calibration data's maximum, x max |W|; CrossSim's MAX), one number per row tile for every input. A "
        "calibrated range is the percentile of the partial sums the calibration data produces, clipping beyond it. "
        "The comparison calibration is for is calibrated against the fixed worst case; the per-sample rule is "
        "an upper reference no fixed converter has.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=50)
    ap.add_argument("--percentiles", default="99.99,99.9,99")
    ap.add_argument("--checkpoint", default=str(Path(tempfile.gettempdir()) / "nft-deploy-calibration" / "lenet5.pt"))
    args = ap.parse_args(argv)
    ckpt = _trained(Path(args.checkpoint))
    from nft_deploy.evaluation.runner import evaluate
    from nft_deploy.export import export_model

    variants = {"full scale per sample (ideal auto-ranging)": {},
                "fixed worst case (--adc-range max --percentile 100)": {"calibrate": "mnist-5k", "percentile": 100.0, "adc_range": "max"}}
    variants.update({f"calibrated p{p}": {"calibrate": "mnist-5k", "percentile": float(p)}
                     for p in args.percentiles.split(",")})
    variants["calibrated p99.99 per array"] = {"calibrate": "mnist-5k", "percentile": 99.99, "adc_ranges_per": "array"}
    rows = ["| ADC/DAC ranges | clean accuracy | mean accuracy | 95% CI | 5th percentile |", "|---|---|---|---|---|"]
    out = {"checkpoint_command": "nft-deploy " + " ".join(TRAIN), "profile": PROFILE, "chips": args.chips, "runs": {}}
    for label, kw in variants.items():
        path = ckpt.with_name(f"{ckpt.stem}.{label.split(' (')[0].replace(' ', '_')}.cim.onnx")
        export_model(str(ckpt), profile=PROFILE, output=path, **kw)
        r = evaluate(str(path), "mnist-5k", chips=args.chips, quiet=True)
        a = r.accuracy
        out["runs"][label] = {"clean": r.clean.accuracy, "mean": a.mean, "ci95": [a.ci95.low, a.ci95.high], "p5": a.p5}
        rows.append(f"| {label} | {100 * r.clean.accuracy:.2f}% | {100 * a.mean:.2f}% | {100 * a.ci95.low:.2f}..."
                    f"{100 * a.ci95.high:.2f}% | {100 * a.p5:.2f}% |")
    (RESULTS / "calibration_lenet.json").write_text(json.dumps(out, indent=2) + "\n")
    text = (f"# LeNet-5 (mnist-5k) with 6-bit partial-sum ADCs: full-scale versus calibrated ranges\n\n"
            f"`{out['checkpoint_command']}`, exported on `{PROFILE}` with full-scale converter ranges and with "
            f"`--calibrate mnist-5k` (256 training samples) at each percentile; evaluated on {args.chips} chips "
            f"(same seed) on the mnist-5k test split.\n\n" + "\n".join(rows) + "\n\n" + NOTE + "\n")
    (RESULTS / "calibration_lenet.md").write_text(text)
    _plot(out["runs"], args.chips)
    print(text)
    return 0


def _plot(runs: dict, chips: int) -> None:
    """Mean accuracy with its 95% CI per range rule, and the 5th percentile chip (calibration_lenet.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(runs)
    mean = [100 * r["mean"] for r in runs.values()]
    err = [[100 * (r["mean"] - r["ci95"][0]) for r in runs.values()], [100 * (r["ci95"][1] - r["mean"]) for r in runs.values()]]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    y = range(len(labels))
    ax.barh(y, mean, xerr=err, color=["0.6", "C3"] + ["C0"] * (len(labels) - 2), capsize=3, label="mean (95% CI)")
    ax.plot([100 * r["p5"] for r in runs.values()], y, "k|", markersize=14, label="5th percentile chip")
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set(xlabel="Monte Carlo accuracy (%)", title=f"LeNet-5, 6-bit partial-sum ADCs, {chips} chips")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "calibration_lenet.png", dpi=110)
    plt.close(fig)


def _trained(ckpt: Path) -> Path:
    """The checkpoint, trained with ``TRAIN`` when missing."""
    if not ckpt.is_file():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "nft_deploy.cli", *TRAIN, "-o", str(ckpt)], check=True)
    return ckpt


if __name__ == "__main__":
    sys.exit(main())
