"""What does reading the same chips at T times cost? (issue 11; run by hand; writes
benchmarks/results/drift_times.{md,json}).

LeNet-5 deployed once on ``pcm_drift`` (untrained weights: timing only), ``--images`` MNIST-sized inputs,
1 worker x 1 thread, ``--strategy`` (default feed). Side by side, each in a fresh process: ``evaluate --time`` with T = 1, 2, 4 and
8 times, and at T = 4 with 4x the chips. Per chip, the Monte Carlo's wall time over T is compared with one
clean pass (one inference over the data with programmed weights already in a session: the floor of any
read; also the evaluator's own clean pass, which programs and accumulates metrics); the bar is at most 1.2 x T clean passes per chip, with no re-export (the graph takes the time as an
input). Peak RSS shows memory flat in chips and times.

    .venv/bin/python benchmarks/drift_times.py [--chips 16] [--images 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TIMES = ["20s", "1h", "1d", "30d", "1y", "2y", "5y", "10y"]

RUN = r"""
import json, resource, time, numpy as np
from nft_deploy.data import batches
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.programming import InferenceGraph, Programmer
from nft_deploy.evaluation.runner import EvalConfig, run_monte_carlo
m = load_deployed({model!r})
z = np.load({data!r})
x, y = {{m.input_name: z["x"]}}, z["y"]
prog = Programmer(m.split, m.layers, m.weights).program(0, 3, None, 3.0e7)
session, feeds = InferenceGraph(m.split, m.weights).session(prog, None, 1, fold=True)
runs = []
for _ in range(5):
    t0 = time.perf_counter()
    for idx in batches(len(y), 256):
        session.run([m.output_name], {{m.input_name: x[m.input_name][idx], **feeds}})
    runs.append(time.perf_counter() - t0)
timings = {{}}
cfg = EvalConfig(chips={chips}, workers=1, threads=1, strategy={strategy!r}, quiet=True, time={times!r})
r = run_monte_carlo(m, x, y, cfg, timings=timings)
print(json.dumps({{"bare_pass_s": sorted(runs)[2], "clean_pass_s": timings["clean_s"], "chips_s": timings["chips_s"],
                   "mean": r.accuracy.mean,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=16)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--strategy", default="feed", choices=("fold", "feed"))
    args = ap.parse_args(argv)
    import numpy as np
    import torch

    from nft_deploy.export import export_model
    from nft_deploy.models import build_model

    with tempfile.TemporaryDirectory() as tmp:
        model, data = f"{tmp}/lenet.cim.onnx", f"{tmp}/x.npz"
        torch.manual_seed(0)
        export_model(build_model("lenet5"), profile="pcm_drift", input_shape=(1, 28, 28), output=model)
        rng = np.random.default_rng(0)
        np.savez(data, x=rng.random((args.images, 1, 28, 28), dtype=np.float32), y=rng.integers(0, 10, args.images))
        cases = [(t, args.chips) for t in (1, 2, 4, 8)] + [(4, 4 * args.chips)]
        rows = []
        for t, chips in cases:
            code = RUN.format(model=model, data=data, chips=chips, times=",".join(TIMES[:t]), strategy=args.strategy)
            out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                            text=True).stdout.strip().splitlines()[-1])
            per_chip = out["chips_s"] / chips
            rows.append({"times": t, "chips": chips, **out, "per_chip_s": per_chip,
                         "ratio_to_T_clean_passes": per_chip / (t * out["clean_pass_s"]),
                         "ratio_to_T_bare_passes": per_chip / (t * out["bare_pass_s"])})
    text = ["# Reading the same chips at T times (drift)", "",
            f"LeNet-5 on `pcm_drift`, {args.images} images, 1 worker x 1 thread, fold; {platform.processor() or ''} "
            f"{platform.machine()}, --strategy {args.strategy}. Per chip: Monte Carlo wall time / chips. Clean pass: the "
            "evaluator's clean pass (program the ideal chip, build its session, one pass over the data with the "
            "metrics); bare pass: one inference over the data in an already-built session, nothing else. Bar: "
            "per chip <= 1.2 x T clean passes.", "",
            "| times T | chips | clean pass (s) | bare pass (s) | per chip (s) | / T clean passes | / T bare passes | "
            "peak RSS (MB) |", "|---|---|---|---|---|---|---|---|"]
    text += [f"| {r['times']} | {r['chips']} | {r['clean_pass_s']:.4f} | {r['bare_pass_s']:.4f} | {r['per_chip_s']:.4f} "
             f"| {r['ratio_to_T_clean_passes']:.3f} | {r['ratio_to_T_bare_passes']:.3f} | {r['peak_rss_mb']:.0f} |"
             for r in rows]
    (RESULTS / "drift_times.json").write_text(json.dumps({"images": args.images, "strategy": args.strategy,
                                                          "rows": rows}, indent=2) + "\n")
    (RESULTS / "drift_times.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
