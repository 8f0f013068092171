"""Scale of one model: torchvision ResNet-50 at 224x224 through the user's path on this machine (run by hand;
writes benchmarks/results/resnet50_scale.{md,json}).

Random weights (seed 0, 1000 classes), no download. Each phase runs in a fresh Python process, so each
peak memory is that phase's own (``resource.getrusage``: ``RUSAGE_SELF`` for the process, ``RUSAGE_CHILDREN``
for its largest worker, which was forked from it and so counts the pages it shares with it):

1. ``float``: ``torch.onnx.export`` (dynamo, dynamic batch) of the float model, as a user runs it; the
   labels of the 256 synthetic images (seeded normal noise) are the float model's own predictions, so the
   accuracy below is agreement with the float model.
2. ``deploy``: ``export_model(float.onnx, profile=...)`` (the ONNX graph pass).
3. ``evaluate``: ``evaluate(deployed, (x, y), chips=16)`` with the default workers (one per core) and
   strategy; the evaluator's own estimate of one worker (``local_backend.worker_bytes``, what it compares
   with ``MemAvailable`` before starting workers) is recorded next to the measured peaks.
4. ``one_worker`` (``--batch-size`` 256, the default) and ``one_worker_b32``: what one worker does (clean pass
   and 2 chips, in-process, 1 thread), its peak resident size's growth over the size before
   (``/proc/self/clear_refs``, as ``benchmarks/memory.py``): the worker's memory of its own, against the
   bound of ``benchmarks/results/memory.md`` (4x the weight bytes plus the data) and against the
   evaluator's estimate. At 224x224 a batch's activations, which neither counts, are the largest part.

RUSAGE_CHILDREN also counts any short-lived child a phase forks (``ctypes.util.find_library`` runs
``ldconfig``), at the parent's size then: only the evaluate phase's figure is its workers'.

    .venv/bin/python benchmarks/resnet50_scale.py [--images 256] [--chips 16] [--profile rram_4bit]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SIZE = 224
CLASSES = 1000


def _peaks() -> dict:
    """Peak resident sizes so far (bytes): this process and its largest finished child."""
    return {"self_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "children_peak_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}


def _status(key: str) -> int:
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))


def phase_float(work: Path, images: int) -> dict:
    import numpy as np
    import torch

    from nft_deploy.compat import import_torchvision

    tv = import_torchvision()
    if tv is None:
        raise SystemExit("torchvision is not installed (pip install torchvision)")
    torch.manual_seed(0)
    net = tv.models.resnet50(num_classes=CLASSES).eval()
    x = np.random.default_rng(0).standard_normal((images, 3, SIZE, SIZE), dtype=np.float32)
    start = time.perf_counter()
    with torch.no_grad():
        y = np.concatenate([net(torch.from_numpy(x[i:i + 32])).argmax(1).numpy() for i in range(0, images, 32)])
    labels_s = time.perf_counter() - start
    np.savez(work / "data.npz", x=x, y=y.astype(np.int64))
    start = time.perf_counter()
    prog = torch.onnx.export(net, (torch.from_numpy(x[:2]),), dynamo=True, verbose=False,
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    prog.save(str(work / "resnet50.onnx"))
    return {"seconds": time.perf_counter() - start, "labels_seconds": labels_s,
            "parameters": sum(p.numel() for p in net.parameters()),
            "weight_bytes": sum(p.numel() * p.element_size() for p in net.parameters()),
            "distinct_labels": int(len(set(y.tolist())))}


def phase_deploy(work: Path, profile: str) -> dict:
    from nft_deploy.export import export_model

    start = time.perf_counter()
    result = export_model(work / "resnet50.onnx", profile=profile, output=work / "resnet50.cim.onnx")
    return {"seconds": time.perf_counter() - start,
            "summary": [ln for ln in result.summary() if ln.startswith(("Inserted", "Passed"))],
            "deployed_file_bytes": (work / "resnet50.cim.onnx").stat().st_size}


def _load(work: Path):
    import numpy as np

    from nft_deploy.evaluation.deployed import load_deployed

    data = np.load(work / "data.npz")
    return load_deployed(str(work / "resnet50.cim.onnx")), data["x"], data["y"]


def phase_evaluate(work: Path, chips: int) -> dict:
    import warnings

    from nft_deploy.evaluation.local_backend import available_bytes, resolve_workers, worker_bytes
    from nft_deploy.evaluation.runner import choose_strategy, evaluate

    start = time.perf_counter()
    model, x, y = _load(work)
    load_s = time.perf_counter() - start
    strategy = choose_strategy(model, "auto")
    model_bytes = len(model.split.inference) + sum(w.nbytes for w in model.weights.values())
    estimate = worker_bytes(model_bytes, x.nbytes, strategy)
    before = _status("VmRSS:")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        result = evaluate(model, (x, y), chips=chips, seed=0, quiet=True)
    seconds = time.perf_counter() - start
    r = result.to_dict()
    acc = r["accuracy"]
    return {"seconds": seconds, "load_seconds": load_s, "strategy": strategy,
            "workers": resolve_workers(None, chips), "model_bytes": model_bytes, "data_bytes": int(x.nbytes),
            "estimate_worker_bytes": estimate, "available_bytes_before": available_bytes(),
            "rss_before_evaluate_bytes": before, "notes": [str(n.message) for n in notes],
            "clean_accuracy": r["clean"]["accuracy"], "mean_accuracy": acc["mean"], "p5_accuracy": acc["p5"],
            "min_accuracy": acc["min"]}


def phase_one_worker(work: Path, batch_size: int) -> dict:
    import gc

    from nft_deploy.evaluation.runner import evaluate

    model, x, y = _load(work)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident size (VmHWM) to the current one
    before = _status("VmRSS:")
    start = time.perf_counter()
    evaluate(model, (x, y), chips=2, workers=1, threads=1, seed=0, batch_size=batch_size, quiet=True)
    return {"seconds": time.perf_counter() - start, "worker_own_bytes": _status("VmHWM:") - before,
            "rss_before_bytes": before, "batch_size": batch_size}


PHASES = {"float": lambda a, w: phase_float(w, a.images), "deploy": lambda a, w: phase_deploy(w, a.profile),
          "evaluate": lambda a, w: phase_evaluate(w, a.chips),
          "one_worker": lambda a, w: phase_one_worker(w, 256), "one_worker_b32": lambda a, w: phase_one_worker(w, 32)}


def run_phase(name: str, args, work: Path) -> dict:
    """``name`` in a fresh process; its JSON with the wall time of the whole process and the peaks."""
    cmd = [sys.executable, __file__, "--phase", name, "--workdir", str(work), "--images", str(args.images),
           "--chips", str(args.chips), "--profile", args.profile]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout.splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - start
    print(f"{name:10s} {out['seconds']:7.1f} s (process {out['process_seconds']:.1f} s), peak "
          f"{out['self_peak_bytes'] / 2**20:7.0f} MiB, workers {out['children_peak_bytes'] / 2**20:7.0f} MiB",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--chips", type=int, default=16)
    ap.add_argument("--profile", default="rram_4bit")
    ap.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help="keep the models and data here [a temporary folder]")
    args = ap.parse_args()
    if args.phase:
        out = PHASES[args.phase](args, args.workdir)
        print(json.dumps({**out, **_peaks()}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        phases = {name: run_phase(name, args, work) for name in PHASES}
    _write(args, phases, {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                          "load_average": os.getloadavg()})


def _write(args, phases: dict, machine: dict) -> None:
    mib = 2**20
    weights = phases["float"]["weight_bytes"]
    ev = phases["evaluate"]
    bound = 4 * weights + ev["data_bytes"]
    report = {"model": "torchvision resnet50", "input": [3, SIZE, SIZE], "classes": CLASSES,
              "images": args.images, "chips": args.chips, "profile": args.profile,
              "machine": machine,
              "bound_worker_bytes": bound, "phases": phases}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "resnet50_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [(name, p["seconds"], p["process_seconds"], p["self_peak_bytes"], p["children_peak_bytes"])
            for name, p in phases.items()]
    lines = [f"# Scale of one model: ResNet-50, {SIZE}x{SIZE}, {args.images} images, {args.chips} chips, "
             f"{args.profile}", "",
             f"torchvision ResNet-50, random weights (seed 0), {CLASSES} classes: "
             f"{phases['float']['parameters'] / 1e6:.1f} M parameters, {weights / mib:.0f} MiB of float weights; "
             f"{args.images} seeded synthetic images ({ev['data_bytes'] / mib:.0f} MiB), labelled by the float "
             f"model ({phases['float']['distinct_labels']} distinct classes: a random-weight ResNet-50 gives noise "
             "images nearly one class, so the accuracies below only say whether a chip keeps the float model's "
             f"answer; they say nothing of a trained model). Machine: {machine['cpus']} cores, "
             f"{machine['memory_bytes'] / 2**30:.0f} GiB, load average "
             f"{', '.join(f'{v:.2f}' for v in machine['load_average'])} at the end (other jobs shared the cores). "
             "Each phase in a "
             "fresh process; peaks from getrusage (workers are forked, so their peak counts the pages they "
             "share with the parent).", "",
             "| phase | seconds | process seconds | peak RSS MiB | largest worker's peak RSS MiB |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {s:.1f} | {ps:.1f} | {a / mib:.0f} | {c / mib:.0f} |" for n, s, ps, a, c in rows]
    lines += ["", f"- float: labels (float model, {args.images} images) {phases['float']['labels_seconds']:.1f} s; "
              f"`torch.onnx.export` {phases['float']['seconds']:.1f} s.",
              f"- deploy: {'; '.join(phases['deploy']['summary'])}.",
              f"- evaluate: strategy {ev['strategy']}, {ev['workers']} workers, load {ev['load_seconds']:.1f} s; "
              f"accuracy against the float model: clean {ev['clean_accuracy']:.3f}, chips mean "
              f"{ev['mean_accuracy']:.3f}, p5 {ev['p5_accuracy']:.3f}, min {ev['min_accuracy']:.3f}. Notes: "
              f"{'; '.join(ev['notes']) or 'none'}.",
              *[_worker_line(phases[k], weights, bound, ev["estimate_worker_bytes"])
                for k in ("one_worker", "one_worker_b32")],
              f"- MemAvailable before evaluate: {ev['available_bytes_before'] / 2**30:.1f} GiB."]
    (RESULTS / "resnet50_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _worker_line(one: dict, weights: int, bound: int, estimate: int) -> str:
    mib, own = 2**20, one["worker_own_bytes"]
    return (f"- one worker's own peak, --batch-size {one['batch_size']} (clean pass + 2 chips, 1 thread, "
            f"{one['seconds']:.1f} s): **{own / mib:.0f} MiB** = {own / weights:.1f}x the weights; bound (4x "
            f"weights + data, `memory.md`) {bound / mib:.0f} MiB: {'met' if own <= bound else '**missed**'}; the "
            f"evaluator's estimate before starting workers {estimate / mib:.0f} MiB "
            f"({'covers it' if estimate >= own else '**under it**'}).")


if __name__ == "__main__":
    main()
