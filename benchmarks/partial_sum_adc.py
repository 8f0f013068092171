"""What partial-sum ADCs do to accuracy: ADC bits x array size on LeNet-5 (issue 11's "how many arrays does
this model need and what do partial-sum ADCs do to it?"; run by hand; writes
benchmarks/results/partial_sum_adc.{md,json,png}).

One checkpoint (``calibration_lenet.py``'s: LeNet-5, mnist-5k, noise injection on ``rram_128x128_adc6``) is
exported on ``rram_128x128_adc6`` with the ADC resolution and the array size varied: no ``array`` section
(one ADC on each layer's full output), and square arrays of 256, 128 and 64 rows (one ADC per row tile's
partial sum, summed digitally). Every export is calibrated (``--calibrate mnist-5k``, p99.99) so that the
range rule is not what differs, and evaluated on the same chips (same seed).

    .venv/bin/python benchmarks/partial_sum_adc.py [--chips 30] [--bits 4,5,6,8] [--rows 0,256,128,64]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from calibration_lenet import RESULTS, _trained  # noqa: E402  (one checkpoint for both benchmarks)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=30)
    ap.add_argument("--bits", default="4,5,6,8")
    ap.add_argument("--rows", default="0,256,128,64", help="array rows (= cols); 0: no arrays, one ADC per layer")
    ap.add_argument("--checkpoint", default=None)
    args = ap.parse_args(argv)
    from nft_deploy.evaluation.deployed import load_deployed
    from nft_deploy.evaluation.runner import evaluate
    from nft_deploy.export import export_model
    from nft_deploy.profile_types import ArraySpec
    from nft_deploy.profiles import load_profile

    ckpt = _trained(Path(args.checkpoint) if args.checkpoint else _default_checkpoint())
    base = load_profile("rram_128x128_adc6")
    runs = []
    for rows in (int(r) for r in args.rows.split(",")):
        for bits in (int(b) for b in args.bits.split(",")):
            prof = dataclasses.replace(base, io=dataclasses.replace(base.io, output_bits=bits),
                                       array=ArraySpec(rows=rows, cols=rows, differential=True) if rows else None)
            path = ckpt.with_name(f"{ckpt.stem}.psadc_r{rows}_b{bits}.cim.onnx")
            export_model(str(ckpt), profile=prof, output=path, calibrate="mnist-5k", percentile=99.99)
            plan = load_deployed(str(path)).plan
            arrays = sum(lay.tiles.arrays for lay in plan.mapped if lay.tiles is not None)
            r = evaluate(str(path), "mnist-5k", chips=args.chips, quiet=True)
            a = r.accuracy
            runs.append({"rows": rows, "bits": bits, "arrays": arrays, "mean": a.mean, "ci95": [a.ci95.low, a.ci95.high],
                         "p5": a.p5, "clean": r.clean.accuracy})
            print(f"rows {rows or '-':>4} bits {bits}: {100 * a.mean:.2f}% ({arrays} arrays)", file=sys.stderr, flush=True)
    _write(runs, args.chips)
    return 0


def _default_checkpoint() -> Path:
    import tempfile

    return Path(tempfile.gettempdir()) / "nft-deploy-calibration" / "lenet5.pt"


def _write(runs: list[dict], chips: int) -> None:
    bits = sorted({r["bits"] for r in runs})
    rows = list(dict.fromkeys(r["rows"] for r in runs))
    cell = {(r["rows"], r["bits"]): r for r in runs}
    lines = ["# Partial-sum ADCs: ADC bits x array size (LeNet-5, mnist-5k)", "",
             f"Checkpoint as in calibration_lenet.md; profile rram_128x128_adc6 with `io.output_bits` and the array "
             f"size varied, ranges calibrated at p99.99; Monte Carlo mean accuracy (95% CI) over the same {chips} chips.",
             "", "| arrays | " + " | ".join(f"{b}-bit ADC" for b in bits) + " |", "|---|" + "---|" * len(bits)]
    for n in rows:
        label = "none (one ADC per layer)" if n == 0 else f"{n}x{n} ({cell[(n, bits[0])]['arrays']} arrays)"
        lines.append(f"| {label} | " + " | ".join(
            f"{100 * cell[(n, b)]['mean']:.2f} ({100 * cell[(n, b)]['ci95'][0]:.2f}-{100 * cell[(n, b)]['ci95'][1]:.2f})"
            for b in bits) + " |")
    (RESULTS / "partial_sum_adc.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "partial_sum_adc.json").write_text(json.dumps({"chips": chips, "runs": runs}, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, n in enumerate(rows):
        rs = [cell[(n, b)] for b in bits]
        ax.errorbar(bits, [100 * r["mean"] for r in rs], capsize=3, marker="o", color=f"C{i}",
                    yerr=[[100 * (r["mean"] - r["ci95"][0]) for r in rs], [100 * (r["ci95"][1] - r["mean"]) for r in rs]],
                    label="one ADC per layer" if n == 0 else f"{n}x{n} arrays, ADC per partial sum")
    ax.set(xlabel="ADC bits", ylabel="Monte Carlo accuracy (%)", xticks=bits,
           title=f"LeNet-5 on rram_128x128_adc6 variants, calibrated ranges, {chips} chips")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "partial_sum_adc.png", dpi=110)
    plt.close(fig)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
