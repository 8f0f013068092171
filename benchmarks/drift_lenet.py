"""LeNet-5 on mnist-5k under PCM drift, with and without compensation (issue 11's acceptance; run by hand;
writes benchmarks/results/drift_lenet.{md,json,png}).

Trains (once, if the checkpoint is missing) exactly as the issue says:
``nft-deploy train --model lenet5 --method noise_injection --profile pcm_drift --epochs 3``, then evaluates
the checkpoint on the built-in ``pcm_drift`` profile (global compensation) and on the same profile with
``compensation: none``, on the same chips (same seed), each chip programmed once and read at every time.

    .venv/bin/python benchmarks/drift_lenet.py [--chips 100] [--times 20s,1h,1d,30d,1y]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TRAIN = ["train", "--model", "lenet5", "--method", "noise_injection", "--profile", "pcm_drift", "--epochs", "3",
         "--data", "mnist-5k"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=100)
    ap.add_argument("--times", default="20s,1h,1d,30d,1y")
    ap.add_argument("--checkpoint", default=str(Path(tempfile.gettempdir()) / "nft-deploy-drift" / "lenet5_pcm_drift.pt"))
    args = ap.parse_args(argv)
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "nft_deploy.cli", *TRAIN, "-o", str(ckpt)], check=True)
    from nft_deploy.evaluation.reports import time_curve
    from nft_deploy.evaluation.runner import evaluate
    from nft_deploy.profiles import load_profile

    prof = load_profile("pcm_drift")
    variants = {"global": prof, "none": dataclasses.replace(
        prof, name="pcm_drift_uncompensated", drift=dataclasses.replace(prof.drift, compensation="none"))}
    runs = {k: evaluate(str(ckpt), "mnist-5k", profile=p, chips=args.chips, time=args.times, quiet=True)
            for k, p in variants.items()}
    rows = ["| compensation | time | mean accuracy | 95% CI | 5th percentile |", "|---|---|---|---|---|"]
    out = {"checkpoint_command": "nft-deploy " + " ".join(TRAIN), "chips": args.chips,
           "clean": runs["global"].clean.accuracy, "runs": {}}
    for k, r in runs.items():
        out["runs"][k] = [{"time": t.label, "seconds": t.seconds, "mean": t.accuracy.mean,
                           "ci95": [t.accuracy.ci95.low, t.accuracy.ci95.high], "p5": t.accuracy.p5}
                          for t in r.times]
        rows += [f"| {k} | {t.label} | {100 * t.accuracy.mean:.2f}% | {100 * t.accuracy.ci95.low:.2f}..."
                 f"{100 * t.accuracy.ci95.high:.2f}% | {100 * t.accuracy.p5:.2f}% |" for t in r.times]
    (RESULTS / "drift_lenet.json").write_text(json.dumps(out, indent=2) + "\n")
    text = (f"# LeNet-5 (mnist-5k) under PCM drift\n\n`{out['checkpoint_command']}`, then evaluate on `pcm_drift` "
            f"(global compensation) and the same profile with `compensation: none`: {args.chips} chips, each "
            f"programmed once and read at {args.times}; clean (t0, no noise) accuracy "
            f"{100 * out['clean']:.2f}%.\n\n" + "\n".join(rows) + "\n")
    (RESULTS / "drift_lenet.md").write_text(text)
    time_curve([runs["global"], runs["none"]], RESULTS / "drift_lenet.png", ["global compensation", "none"])
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
