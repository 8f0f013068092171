"""The device plan as a text table (``nft-deploy plan``, ``export``'s report)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nft_deploy.arrays import totals

if TYPE_CHECKING:
    from nft_deploy.device_plan import DevicePlan


def table(plan: DevicePlan, noise_to_rms: dict[str, float] | None = None) -> list[str]:
    """The plan as aligned text rows (``nft-deploy plan``, ``export``'s report); with ``noise_to_rms`` (layer ->
    programming noise / rms weight, from the model's weights) one more column says where noise swamps a layer."""
    head = ("layer", "op", "shape", "device", "sigma", "std/max|W|", "cells", "DAC", "ADC")
    extra = ("noise/rms",) if noise_to_rms else ()
    arrays = ("tiles", "arrays", "util") if plan.profile.array is not None else ()
    arrays += ("DAC/ADC range",) if plan.ranges else ()
    rows = [head + arrays + extra]
    for lay in plan.layers:
        shape = "x".join(map(str, lay.shape)) or "-"
        ratio = (f"{noise_to_rms[lay.name]:.3f}" if lay.name in noise_to_rms else "-",) if extra else ()
        if lay.mapped:
            nm = lay.noise
            rows.append((lay.name, lay.op, shape, "mapped", f"{lay.device.programming.sigma:g}",
                         f"{nm.weight_std:.4f}", str(lay.device.weights.cells), _bits(lay.input_bits),
                         _bits(lay.output_bits)) + _tiles(lay.tiles, arrays) + _range(lay, arrays) + ratio)
        else:
            rows.append((lay.name, lay.op, shape, f"digital: {lay.reason}", "-", "-", "-", "-", "-")
                        + _tiles(None, arrays) + _range(None, arrays) + ratio)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    unit = plan.profile.programming.unit
    lines.append(f"{len(plan.mapped)} mapped, {len(plan.layers) - len(plan.mapped)} digital; profile "
                 f"{plan.profile.name!r} at sigma {plan.sigma:g} ({unit})")
    if arrays:
        spec, tot = plan.profile.array, totals([lay.tiles for lay in plan.mapped if lay.tiles is not None])
        lines.append(f"{tot['arrays']} arrays of {spec.rows}x{spec.cols}"
                     f"{' (differential pairs)' if spec.differential else ''}, utilization "
                     f"{100 * tot['utilization']:.1f}% ({tot['used_cells']} of {tot['cells']} cells)")
    swamped = sorted(name for name, r in (noise_to_rms or {}).items() if r > 1)
    if swamped:
        lines.append(f"noise exceeds the rms weight in {', '.join(swamped)}: noisy training may not converge "
                     "(train --sigma-warmup, or a lower --sigma)")
    return lines


def _tiles(t, arrays: tuple) -> tuple:
    """The array columns: row tiles x column tiles (per group, times groups when > 1), arrays, utilization."""
    if "tiles" not in arrays:
        return ()
    if t is None:
        return ("-", "-", "-")
    per = f"{t.row_tiles}x{t.col_tiles}" + (f" x{t.groups}g" if t.groups > 1 else "")
    return (per, str(t.arrays), f"{100 * t.utilization:.1f}%")


def _range(lay, arrays: tuple) -> tuple:
    """Calibrated ranges: the DAC's, then the ADC's (min..max over row tiles, or over arrays, their count in
    brackets, where each array has its own); ``full`` where none."""
    if "DAC/ADC range" not in arrays:
        return ()
    if lay is None:
        return ("-",)
    entries = lay.adc_range or ()
    adc = [float(v) for e in entries for v in (e if isinstance(e, (tuple, list)) else (e,))]
    a = "full" if not adc else f"{adc[0]:.3g}" if len(adc) == 1 else f"{min(adc):.3g}..{max(adc):.3g}"
    a += f" [{len(adc)} arrays]" if len(adc) > len(entries) else ""
    return (f"{'full' if lay.dac_range is None else format(lay.dac_range, '.3g')}/{a}",)


def _bits(b: int | None) -> str:
    return "-" if b is None else str(b)
