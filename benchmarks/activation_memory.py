"""A batch's activations in one evaluation worker's peak: the evaluator's estimate against the measured peak
(run by hand; writes benchmarks/results/activation_memory.{md,json}).

Each cell runs in a fresh Python process, as ``benchmarks/memory.py`` does: the model is exported and
deployed, the peak resident size is reset (``/proc/self/clear_refs``), then ``evaluate`` runs the clean
pass and 2 chips in this process at one ``--batch-size`` (what one worker does, 1 thread). The cells of a
model differ only in the batch size, so the growth of the measured peak from one to the next, per sample,
is what the batch's activations cost; it is set against ``activations.activation_bytes`` (the peak of live
activation bytes of one sample) and the plain sum of every activation of one sample. ``--resnet50`` adds
the estimate for torchvision ResNet-50 at 224x224 beside the peaks ``benchmarks/resnet50_scale.py``
measured (``results/resnet50_scale.json``), without rerunning it.

    .venv/bin/python benchmarks/activation_memory.py [--models lenet5,vgg8,tv_resnet18] [--resnet50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODELS = {"lenet5": ((1, 28, 28), (32, 256), 512), "vgg8": ((3, 32, 32), (32, 256), 512),
          "tv_resnet18": ((3, 224, 224), (16, 32, 64), 128), "tv_resnet50": ((3, 224, 224), (), 0)}
"""Model: (sample shape, batch sizes measured, samples): at least two batches a chip, as on any data set
larger than a batch (a session's later runs took more than its first: VGG-8 grew 1.4x its per-sample peak
with one batch of 256, 2.4x with two)."""

CELL = r"""
import json, sys
import numpy as np, torch
from nft_deploy.evaluation import activations
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.local_backend import worker_bytes
from nft_deploy.evaluation.runner import choose_strategy, evaluate
from nft_deploy.export import export_model
name, shape, batch, samples = {name!r}, {shape!r}, {batch!r}, {samples!r}
torch.manual_seed(0)
if name.startswith("tv_"):
    from nft_deploy.compat import import_torchvision
    net = getattr(import_torchvision().models, name[3:])(num_classes=1000)
else:
    from nft_deploy.models import build_model
    net = build_model(name, in_channels=shape[0])
model = load_deployed(export_model(net.eval(), profile="rram_4bit", input_shape=shape).model)
del net
sizes = activations.activation_sizes(model.proto, [i.name for i in model.inputs])
out = {{"sample_peak_bytes": model.activation_bytes, "sample_sum_bytes": sum(sizes.values()),
        "weight_bytes": sum(w.nbytes for w in model.weights.values())}}
if batch:
    x = np.random.default_rng(0).random((samples, *shape), dtype=np.float32)
    y = np.zeros(samples, np.int64)
    strategy = choose_strategy(model, "auto")
    model_bytes = len(model.split.inference) + out["weight_bytes"]
    out.update(estimate_before=worker_bytes(model_bytes, x.nbytes, strategy), strategy=strategy)
    def status(key):
        return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
    import gc; gc.collect()
    open("/proc/self/clear_refs", "w").write("5")  # resets the peak resident size (VmHWM) to the current one
    before = status("VmRSS:")
    evaluate(model, (x, y), chips=2, workers=1, threads=1, batch_size=batch, quiet=True)
    out["worker_bytes"] = status("VmHWM:") - before
print(json.dumps(out))
"""


def run_cell(name: str, batch: int) -> dict | None:
    shape, _, samples = MODELS[name]
    code = CELL.format(name=name, shape=shape, batch=batch, samples=samples)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"{name} batch {batch}: failed\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    r = {"model": name, "batch_size": batch, "samples": samples, **json.loads(out.stdout.splitlines()[-1])}
    print(json.dumps(r), flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,vgg8,tv_resnet18")
    ap.add_argument("--resnet50", action="store_true")
    ap.add_argument("--rewrite", action="store_true", help="only re-render the results from the JSON")
    args = ap.parse_args()
    if args.rewrite:
        saved = json.loads((RESULTS / "activation_memory.json").read_text())
        return _write(saved["cells"], saved["resnet50_cell"])
    names = args.models.split(",")
    rounds = max(len(MODELS[n][1]) for n in names)
    rows = []
    for i in range(rounds):  # interleaved: the models' cells alternate, so background load hits them alike
        for name in names:
            batches = MODELS[name][1]
            if i < len(batches):
                rows.append(run_cell(name, batches[i]))
    resnet50 = run_cell("tv_resnet50", 0) if args.resnet50 else None
    _write([r for r in rows if r], resnet50)


def _slopes(rows: list[dict]) -> list[dict]:
    """Per model, the measured growth of the peak per extra sample of batch, between consecutive sizes."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        cells = sorted((r for r in rows if r["model"] == name), key=lambda r: r["batch_size"])
        for a, b in zip(cells, cells[1:], strict=False):
            measured = (b["worker_bytes"] - a["worker_bytes"]) / (b["batch_size"] - a["batch_size"])
            out.append({"model": name, "from": a["batch_size"], "to": b["batch_size"], "measured": measured,
                        "peak": a["sample_peak_bytes"], "sum": a["sample_sum_bytes"]})
    return out


def _write(rows: list[dict], resnet50: dict | None) -> None:
    """Renders the cells, the estimate computed here with the evaluator's current rule."""
    from nft_deploy.evaluation.local_backend import ACTIVATION_FACTOR, activation_batch_bytes

    mib = 2**20
    for r in rows:
        r["estimate"] = r["estimate_before"] + activation_batch_bytes(r["batch_size"], r["sample_peak_bytes"])
    slopes = _slopes(rows)
    r50 = _resnet50(resnet50, activation_batch_bytes)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "activation_memory.json").write_text(
        json.dumps({"cells": rows, "per_sample": slopes, "resnet50": r50, "resnet50_cell": resnet50}, indent=2) + "\n")
    lines = ["# A batch's activations in one worker's peak: estimate against measured", "",
             "Each cell in a fresh process: clean pass and 2 chips in-process (one worker's work, 1 thread), profile "
             "rram_4bit, strategy auto; the peak resident size's growth over the size before (VmHWM reset through "
             "/proc/self/clear_refs). 'Estimate before': weights x factor + data + runtime (no activations); "
             f"'estimate': plus {ACTIVATION_FACTOR} x batch x the per-sample peak of live activations (ONNX shape inference).",
             "", "| model | batch | samples | measured MiB | estimate MiB | estimate before MiB | measured / estimate |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch_size']} | {r['samples']} | {r['worker_bytes'] / mib:.1f} | "
                     f"{r['estimate'] / mib:.1f} | {r['estimate_before'] / mib:.1f} | "
                     f"{r['worker_bytes'] / r['estimate']:.2f} |")
    lines += ["", "Per sample of batch: the measured growth of the peak between two batch sizes, against the "
              "per-sample peak of live activations (what the estimate multiplies) and the sum of all of them.", "",
              "| model | batches | measured KiB/sample | peak live KiB | measured / peak | sum KiB | sum / peak |",
              "|---|---|---|---|---|---|---|"]
    for s in slopes:
        lines.append(f"| {s['model']} | {s['from']} -> {s['to']} | {s['measured'] / 1024:.1f} | {s['peak'] / 1024:.1f} "
                     f"| {s['measured'] / s['peak']:.2f} | {s['sum'] / 1024:.1f} | {s['sum'] / s['peak']:.1f} |")
    if r50:
        lines += ["", r50["line"]]
    (RESULTS / "activation_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _resnet50(cell: dict | None, activation_batch_bytes) -> dict | None:
    """The estimate for ResNet-50 beside the peaks ``resnet50_scale.py`` measured (if it has run)."""
    path = RESULTS / "resnet50_scale.json"
    if cell is None or not path.is_file():
        return None
    phases = json.loads(path.read_text())["phases"]
    b256, b32 = phases["one_worker"], phases["one_worker_b32"]
    estimate_before = phases["evaluate"]["estimate_worker_bytes"]
    measured = (b256["worker_own_bytes"] - b32["worker_own_bytes"]) / (256 - 32)
    est = {b: estimate_before + activation_batch_bytes(b, cell["sample_peak_bytes"]) for b in (32, 256)}
    mib = 2**20
    line = (f"torchvision ResNet-50, 224x224 (peaks from resnet50_scale.json): per-sample peak of live activations "
            f"{cell['sample_peak_bytes'] / mib:.2f} MiB (sum {cell['sample_sum_bytes'] / mib:.1f} MiB); measured "
            f"growth {measured / mib:.2f} MiB per sample of batch; one worker at --batch-size 32: measured "
            f"{b32['worker_own_bytes'] / mib:.0f} MiB, estimate {est[32] / mib:.0f} MiB (before: "
            f"{estimate_before / mib:.0f}); at 256: measured {b256['worker_own_bytes'] / mib:.0f} MiB, estimate "
            f"{est[256] / mib:.0f} MiB.")
    return {"sample_peak_bytes": cell["sample_peak_bytes"], "sample_sum_bytes": cell["sample_sum_bytes"],
            "measured_per_sample": measured, "estimate": est, "measured": {32: b32["worker_own_bytes"],
            256: b256["worker_own_bytes"]}, "estimate_before": estimate_before, "line": line}


if __name__ == "__main__":
    main()
