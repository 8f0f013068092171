"""Peak memory of one evaluation worker against the model's weight bytes (run by hand; writes
benchmarks/results/memory.{md,json}).

Each cell runs in a fresh Python process: the model is exported and deployed, the peak resident size is
reset (``/proc/self/clear_refs``), then ``evaluate`` runs the clean pass and 2 chips in this process
(what one worker does, 1 thread). The growth of the peak over the resident size before is the memory a
worker needs of its own; its ratio to the weight bytes is what ``local_backend.BYTES_PER_WEIGHT_BYTE``
estimates before starting workers.

    .venv/bin/python benchmarks/memory.py [--models lenet5,vgg8,resnet18,mlp53m]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

CELL = r"""
import json, sys
import numpy as np, torch
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.local_backend import BYTES_PER_WEIGHT_BYTE
from nft_deploy.evaluation.runner import choose_strategy, evaluate
from nft_deploy.export import export_model
from nft_deploy.models import build_model
name, profile, strategy = {name!r}, {profile!r}, {strategy!r}
torch.manual_seed(0)
if name == "floor":
    net, size = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), 28
elif name == "mlp53m":
    w = 4096
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, w), torch.nn.ReLU(), torch.nn.Linear(w, w),
                              torch.nn.ReLU(), torch.nn.Linear(w, w), torch.nn.ReLU(), torch.nn.Linear(w, w),
                              torch.nn.ReLU(), torch.nn.Linear(w, 10))
    size = 28
else:
    net = build_model(name, **({{}} if name == "lenet5" else {{"width": 0.25}}))
    size = 28 if name == "lenet5" else 32
weight_bytes = sum(p.numel() for p in net.parameters()) * 4
model = load_deployed(export_model(net.eval(), profile=profile, input_shape=(1, size, size)).model)
del net
x = np.random.default_rng(0).random((64, 1, size, size), dtype=np.float32)
y = np.zeros(64, np.int64)
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
import gc; gc.collect()
open("/proc/self/clear_refs", "w").write("5")  # resets the peak resident size (VmHWM) to the current one
before = status("VmRSS:")
evaluate(model, (x, y), chips=2, workers=1, threads=1, strategy=strategy, quiet=True)
print(json.dumps({{"weight_bytes": weight_bytes, "worker_bytes": status("VmHWM:") - before, "base_bytes": before,
                  "estimate_ratio": BYTES_PER_WEIGHT_BYTE[choose_strategy(model, strategy)]}}))
"""

CELLS = [("nft_reference", "fold"), ("nft_reference", "feed"), ("rram_4bit", "fold"), ("rram_4bit", "feed"),
         ("pcm_8bit", "auto")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,vgg8,resnet18,mlp53m")
    args = ap.parse_args()
    rows = []
    for name in ["floor", *args.models.split(",")]:
        for profile, strategy in CELLS:
            code = CELL.format(name=name, profile=profile, strategy=strategy)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{name} {profile} {strategy}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            r = {"model": name, "profile": profile, "strategy": strategy, **json.loads(out.stdout.splitlines()[-1])}
            r["ratio"] = r["worker_bytes"] / r["weight_bytes"]
            rows.append(r)
            print(f"{name:9s} {profile:14s} {strategy}: weights {r['weight_bytes'] / 1e6:7.1f} MB, worker "
                  f"{r['worker_bytes'] / 1e6:8.1f} MB = {r['ratio']:5.1f}x", flush=True)
    floor = {(r["profile"], r["strategy"]): r["worker_bytes"] for r in rows if r["model"] == "floor"}
    for r in rows:
        r["over_floor_ratio"] = (r["worker_bytes"] - floor.get((r["profile"], r["strategy"]), 0)) / r["weight_bytes"]
    _write([r for r in rows if r["model"] != "floor"], floor)


def _write(rows: list[dict], floor: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["# Peak memory of one evaluation worker", "",
             "Each cell in a fresh process: clean pass and 2 chips in-process (one worker's work), 64 samples; the "
             "peak resident size's growth over the size before (VmHWM reset through /proc/self/clear_refs). Target "
             "(issue): at most 4x the weight bytes plus the data batch. 'Over the floor': the same growth minus that "
             "of a 7,850-parameter Linear model under the same profile and strategy (ONNX Runtime's libraries, "
             f"threads and session: {max(floor.values(), default=0) / 1e6:.1f} MB at most), i.e. what grows with "
             "the model. Strategy auto picks fold when convolutions are mapped, else feed.", "",
             "| model | profile | strategy | weights MB | worker MB | ratio | over the floor | estimate used before starting |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['profile']} | {r['strategy']} | {r['weight_bytes'] / 1e6:.1f} | "
                     f"{r['worker_bytes'] / 1e6:.1f} | {r['ratio']:.1f}x | {r['over_floor_ratio']:.1f}x | "
                     f"{r['estimate_ratio']:.1f}x |")
    (RESULTS / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
