"""Benchmark: NFT training in one process against torchrun with N processes (DDP, gloo), same cores.

Run by hand (not in CI):  .venv/bin/python benchmarks/train_ddp.py [--epochs 2] [--rounds 2] [--method ovf]

Each configuration (processes x threads per process, ``--configs``) runs the real CLI (``nft-deploy train``,
LeNet-5, mnist-5k) at the same global batch (``--batch-size`` is per rank, so N ranks get global/N each).
One process with two threads is listed next to one process with one thread: on a loaded machine OpenMP's
threads can stall each other, so the fair baseline is the better of the two. Rounds are interleaved (one
run of every configuration per round) and the medians reported, so load drifts bias no configuration.
With N ranks every step averages N independent noise draws (one per rank), so accuracy may differ.
Training throughput is samples per second of the optimiser steps (evaluation excluded), from the JSON log
(the slowest rank's epoch time). Writes benchmarks/results/train_ddp.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
CLI = Path(sys.executable).parent / "nft-deploy"
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(world: int, threads: int, args, out: Path) -> dict:
    """One training run with ``world`` processes of ``threads`` threads; its log's numbers."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = str(threads)
    train = [str(CLI), "train", "--model", "lenet5", "--data", "mnist-5k", "--method", args.method,
             "--sigma", "0.3", "--epochs", str(args.epochs), "--batch-size", str(args.global_batch // world),
             "--seed", "0", "--quiet", "-o", str(out / f"w{world}.pt")]
    if world > 1:
        train = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world),
                 "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *train]
    subprocess.run(train, env=env, check=True, capture_output=True, text=True)
    log = json.loads((out / f"w{world}.train.json").read_text())
    hist = log["history"]
    n_train = 4000  # mnist-5k: 4,000 training images
    seconds = [h["seconds"] for h in hist]
    return {"world": world, "threads": threads, "seconds_per_epoch": float(np.mean(seconds)), "step_ms": float(np.mean([h["step_ms"] for h in hist])),
            "samples_per_s": n_train / float(np.mean(seconds)), "clean_acc": log["metrics"]["clean_acc"],
            "noisy_acc": log["metrics"]["noisy_acc"], "loss": log["metrics"]["loss"],
            "global_batch": log["distributed"].get("global_batch", args.global_batch)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--method", default="ovf")
    ap.add_argument("--global-batch", type=int, default=128)
    ap.add_argument("--configs", default="1x2,1x1,2x1",
                    help="processes x threads per process, comma-separated (the first 1xT are baselines)")
    args = ap.parse_args()
    configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    load0 = os.getloadavg()
    runs: dict[str, list[dict]] = {f"{w}x{t}": [] for w, t in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for w, t in configs:
                row = run_once(w, t, args, Path(tmp))
                runs[f"{w}x{t}"].append(row)
                print(f"round {r + 1} {w} process(es) x {t} thread(s): {row['samples_per_s']:.0f} samples/s, "
                      f"{row['step_ms']:.1f} ms/step, clean {100 * row['clean_acc']:.2f}%", file=sys.stderr, flush=True)
    summary = []
    for (w, t), rows in zip(configs, runs.values(), strict=True):
        med = {k: float(np.median([x[k] for x in rows])) for k in ("seconds_per_epoch", "step_ms", "samples_per_s",
                                                                    "clean_acc", "noisy_acc")}
        summary.append({"world": w, "threads": t, **med})
    base = max(s["samples_per_s"] for s in summary if s["world"] == 1)
    for s in summary:
        s["speedup"] = s["samples_per_s"] / base
    meta = {"method": args.method, "epochs": args.epochs, "rounds": args.rounds, "global_batch": args.global_batch,
            "cpus": os.cpu_count(), "load_before": load0, "load_after": os.getloadavg(),
            "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_ddp.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=2) + "\n")
    lines = [f"# Training under torchrun (DDP, gloo): LeNet-5, mnist-5k, {args.method}, sigma 0.3",
             "",
             f"Global batch {args.global_batch} (per rank: global / processes), {args.epochs} epochs, median of "
             f"{args.rounds} interleaved rounds; {os.cpu_count()} CPUs, load average {load0[0]:.1f} before, "
             f"{meta['load_after'][0]:.1f} after. Speedup against the fastest one-process configuration.",
             "",
             "| processes x threads | samples/s | speedup | ms/step | s/epoch | clean acc | noisy acc |",
             "|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['world']} x {s['threads']} | {s['samples_per_s']:.0f} | {s['speedup']:.2f}x | {s['step_ms']:.1f} | "
                     f"{s['seconds_per_epoch']:.2f} | {100 * s['clean_acc']:.2f}% | {100 * s['noisy_acc']:.2f}% |")
    (RESULTS / "train_ddp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
