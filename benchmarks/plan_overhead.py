"""Does the compiled device plan cost anything at evaluation time? (run by hand; writes
benchmarks/results/plan_overhead.{md,json}).

Side by side in one run, as interleaved rounds (the same machine load for both): ``evaluate`` of the
same float ONNX LeNet-5 (untrained weights: timing only) deployed on the same profile, by this tree and
by a tree before the device plan (``--before``, default the commit before it landed), each in a fresh
Python process per round, 1 worker x 1 thread, ``--chips`` chips over ``--images`` MNIST-sized inputs.
Times are the in-process wall time of load + deploy + Monte Carlo (imports excluded); also the time to
compile the plan itself (``nft_deploy.plan`` on the checkpoint's torch model and on the float ONNX).

    .venv/bin/python benchmarks/plan_overhead.py [--rounds 5] [--chips 32] [--images 2000] [--before REV]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BEFORE = "089ef2f"  # main before "One device plan"

RUN = r"""
import sys, time, json
sys.path.insert(0, {tree!r})
import numpy as np, onnx
from nft_deploy.evaluation.runner import evaluate
x = np.load({data!r})
t0 = time.perf_counter()
r = evaluate({model!r}, (x["x"], x["y"]), profile={profile!r}, chips={chips}, workers=1, threads=1, quiet=True)
print(json.dumps({{"seconds": time.perf_counter() - t0, "mean": r.accuracy.mean}}))
"""


def _tree(rev: str, where: Path) -> Path:
    """A checkout of ``rev`` whose package imports without the editable install's folder mapping."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), rev], check=True,
                   capture_output=True)
    for sub in ("converters", "device_profiles"):
        (where / "nft_deploy" / sub).symlink_to(where / sub)
    return where


def _once(tree: Path, args, model: Path, data: Path) -> dict:
    code = RUN.format(tree=str(tree), data=str(data), model=str(model), profile=args.profile, chips=args.chips)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _plan_seconds(model_path: Path, ckpt: Path, profile: str) -> dict:
    import time

    import nft_deploy

    t = {}
    for name, src in (("onnx", model_path), ("checkpoint", ckpt)):
        t0 = time.perf_counter()
        nft_deploy.plan(src, profile)
        t[name] = time.perf_counter() - t0
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chips", type=int, default=32)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--profile", default="rram_4bit")
    ap.add_argument("--before", default=BEFORE)
    args = ap.parse_args()
    import torch

    from nft_deploy.checkpoint import save_checkpoint
    from nft_deploy.export import export_model
    from nft_deploy.models import build_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        module = build_model("lenet5").eval()
        float_onnx = tmp / "lenet5.float.onnx"
        export_model(module, profile=None, no_device=True, input_shape=(1, 28, 28), output=float_onnx)
        ckpt = save_checkpoint(tmp / "lenet5.pt", model=module, arch={"name": "lenet5", "kwargs": {}}, profile=None,
                               method={"name": "plain"}, input_shape=(1, 28, 28))
        rng = np.random.default_rng(0)
        np.savez(tmp / "data.npz", x=rng.random((args.images, 1, 28, 28), dtype=np.float32),
                 y=rng.integers(0, 10, args.images))
        trees = {"plan": ROOT, "before": _tree(args.before, tmp / "before")}
        times = {k: [] for k in trees}
        means = {}
        try:
            for r in range(args.rounds):
                for name in (trees if r % 2 == 0 else reversed(list(trees))):
                    out = _once(trees[name], args, float_onnx, tmp / "data.npz")
                    times[name].append(out["seconds"])
                    means[name] = out["mean"]
                    print(f"round {r + 1}/{args.rounds}  {name:6s} {out['seconds']:.3f} s", flush=True)
            plan_s = _plan_seconds(float_onnx, ckpt, args.profile)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees["before"])],
                           capture_output=True)
    _write(args, times, means, plan_s)


def _write(args, times: dict, means: dict, plan_s: dict) -> None:
    med = {k: float(np.median(v)) for k, v in times.items()}
    ratios = [p / b for p, b in zip(times["plan"], times["before"], strict=True)]
    doc = {"args": vars(args), "seconds": times, "median_s": med, "ratio_per_round": ratios,
           "ratio_median": float(np.median(ratios)), "mean_accuracy": means, "plan_compile_s": plan_s,
           "machine": {"cores": os.cpu_count(), "python": platform.python_version()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "plan_overhead.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# The device plan at evaluation time", "",
        f"`evaluate` of LeNet-5 on `{args.profile}`, {args.chips} chips x {args.images} images, 1 worker x 1 "
        f"thread, {args.rounds} interleaved rounds, each in a fresh process (imports excluded).", "",
        "| tree | median s | per-round s |", "|---|---|---|",
        *(f"| {k} | {med[k]:.3f} | {', '.join(f'{t:.3f}' for t in v)} |" for k, v in times.items()), "",
        f"Ratio plan / before, per round: {', '.join(f'{r:.3f}' for r in ratios)}; median "
        f"**{np.median(ratios):.3f}** (min {min(ratios):.3f}, max {max(ratios):.3f}).", "",
        f"Compiling the plan alone: {1000 * plan_s['onnx']:.0f} ms from the float ONNX (graph-pass discovery), "
        f"{1000 * plan_s['checkpoint']:.0f} ms from the checkpoint (load + torch probe forward).", "",
        f"Mean accuracy over the same chips: plan {means['plan']:.4f}, before {means['before']:.4f} (equal "
        "unless the profile has DAC/ADC converters, whose range the plan made per sample).",
    ]
    (RESULTS / "plan_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
