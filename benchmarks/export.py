"""Export + graph-pass time for LeNet-5, VGG-8 and ResNet-18 at full width (target: ResNet-18 < 10 s on a
2-core CPU). Run by hand: ``.venv/bin/python benchmarks/export.py``; writes benchmarks/results/export.md.

Each row is the best of ``--repeats`` runs of ``export_model(checkpoint, profile=...)`` end to end: load
the checkpoint (weights only), torch dynamo export, the device pass, onnx.checker and the atomic write.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import onnx
import torch

from nft_deploy.checkpoint import save_checkpoint
from nft_deploy.export import export_model
from nft_deploy.models import build_model

MODELS = [("lenet5", {"width": 1.0, "input_size": 28}), ("vgg8", {"width": 1.0, "input_size": 32}),
          ("resnet18", {"width": 1.0, "input_size": 32})]


def bench_one(name: str, kwargs: dict, profile: str, repeats: int, tmp: Path) -> dict:
    model = build_model(name, **kwargs)
    ckpt = save_checkpoint(tmp / f"{name}.pt", model=model, arch={"name": name, "kwargs": kwargs}, profile=None,
                           method={"name": "plain"}, input_shape=(1, kwargs["input_size"], kwargs["input_size"]))
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = export_model(ckpt, profile=profile, output=tmp / f"{name}.cim.onnx")
        total = time.perf_counter() - t0
        if best is None or total < best["total"]:
            best = {"total": total, "export": res.export_seconds, "pass": res.pass_seconds, "res": res}
    res = best["res"]
    return {"model": name, "params": sum(p.numel() for p in model.parameters()), "layers": len(res.report.layers),
            "nodes": len(res.model.graph.node), "inserted": res.report.inserted_nodes,
            "mb": (tmp / f"{name}.cim.onnx").stat().st_size / 2**20, "export": best["export"],
            "pass": best["pass"], "total": best["total"], "exporter": res.exporter}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="rram_4bit")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "export.md"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, kwargs in MODELS:
            rows.append(bench_one(name, kwargs, args.profile, args.repeats, Path(d)))
            r = rows[-1]
            print(f"{name}: total {r['total']:.2f}s (export {r['export']:.2f}s, pass {r['pass']:.2f}s)", flush=True)
    lines = [
        "# Export benchmark", "",
        f"`benchmarks/export.py --profile {args.profile} --repeats {args.repeats}` (best of {args.repeats}); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"onnx {onnx.__version__}, torch threads {torch.get_num_threads()}.", "",
        "total = load checkpoint + torch export + device pass + onnx.checker + atomic write. "
        "Target: ResNet-18 < 10 s.", "",
        "| model (full width) | params | mapped layers | nodes after pass (inserted) | file MB | torch export s "
        "| device pass s | total s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['layers']} | {r['nodes']} ({r['inserted']}) | "
                     f"{r['mb']:.1f} | {r['export']:.2f} ({r['exporter']}) | {r['pass']:.2f} | {r['total']:.2f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
