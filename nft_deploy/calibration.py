"""Calibrated converter ranges (``export --calibrate DATA``).

Without calibration a DAC or ADC spans today's full-scale range: per sample, ``max |x|`` of the tensor it
converts. With calibration each converter gets one fixed range, set once at export: the clean deployed graph
(the profile with no programming variation, read noise, stuck-at faults or drift: quantized weights and the
converters only) runs on the calibration inputs, and each DAC's range is the ``percentile`` of ``|x|`` over
every element of its input, each ADC's the same over its input: per row tile where the layer spans several
(each row tile's partial sum has its own range), else per layer. A converter with a fixed range ``m`` clips:
``round(clip(x / m * L, -L, L)) * m / L``.

``per="array"`` (``export --adc-ranges-per array``) gives each array (group, row tile, column tile:
``nft_deploy.arrays``) its own ADC range, as each array has its own ADC: the percentile over the output
channels that array computes (its column tile of its group) of its row tile's partial sum. ``per="row_tile"``
(the default) shares one range across a row tile's arrays. A row tile of one array, and a layer without an
``array`` section, keep one range either way.

``adc_range="max"`` sets each ADC instead to the largest partial sum its array can produce, the fixed
worst-case full scale of a converter that is not calibrated (CrossSim's ``adc_range_option`` MAX): row tile
``k``'s range is ``rows_k * dac_range * max |W|`` (its rows times the DAC's calibrated full input times the
layer's largest weight; per array, the largest weight of that array's rows and outputs), never below the
largest value the calibration data reaches: a bias joins row tile 0 and the bound leaves it out, so only
the data covers it. It needs a DAC (``io.input_bits``): the
DAC's range is what bounds the array's input. The ranges are the plan's (``LayerPlan.dac_range``,
``LayerPlan.adc_range``): they are written as graph constants and in ``nft.plan``, and the torch engine
reads them from the deployed model's plan.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from nft_deploy.arrays import array_channels, array_weights, graph_weight_first, output_axis, tiling
from nft_deploy.errors import ConfigError
from nft_deploy.profiles import DeviceProfile, ReadNoise, StuckAt

Ranges = dict[str, tuple[float | None, tuple[float | tuple[float, ...], ...] | None]]
"""Layer name -> (DAC range or None, ADC ranges per row tile or None: ``LayerPlan.adc_range``'s form)."""


def clean_profile(profile: DeviceProfile) -> DeviceProfile:
    """The profile with weights quantized and converters on, and nothing random: the calibration device."""
    def quiet(p):
        return None if p is None else dataclasses.replace(p, sigma=0.0)

    overrides = tuple(dataclasses.replace(o, programming=quiet(o.programming), read_noise=None, stuck_at=None)
                      for o in profile.mapping.overrides)
    return dataclasses.replace(profile, programming=quiet(profile.programming), read_noise=ReadNoise(),
                               stuck_at=StuckAt(), drift=None,
                               mapping=dataclasses.replace(profile.mapping, overrides=overrides))


ADC_RANGES = ("percentile", "max")
"""How ``calibrate`` sets an ADC's range: the data's percentile, or the array's worst case (module docstring)."""
ADC_RANGES_PER = ("row_tile", "array")
"""What one calibrated ADC range covers: a row tile's arrays together, or each array (module docstring)."""


def calibrate(float_model: onnx.ModelProto, profile: DeviceProfile, x: np.ndarray, percentile: float = 99.99,
              batch_size: int = 64, adc_range: str = "percentile", per: str = "row_tile") -> Ranges:
    """Each mapped layer's converter ranges from the clean deployed graph run on ``x`` (module docstring)."""
    import onnxruntime as ort

    from nft_deploy.converters.graph_pass import run_pass

    if not 0 < percentile <= 100:
        raise ConfigError(f"--percentile: must be in (0, 100], got {percentile:g}")
    if adc_range not in ADC_RANGES:
        raise ConfigError(f"--adc-range: {adc_range!r} is not one of {', '.join(ADC_RANGES)}")
    check_per(per)
    if len(x) == 0:
        raise ConfigError("--calibrate: the calibration data holds no sample")
    deployed, report = run_pass(float_model, clean_profile(profile))
    taps = _taps(deployed, report.plan)
    names = sorted({n for dac, adcs in taps.values() for tap in ((dac,) if dac else ()) + adcs for n in tap})
    if not names:
        return {}
    splits = _splits(report.plan, taps) if per == "array" else {}
    split_of = {n: s for tap, s in splits.items() for n in tap}
    graph = deployed.graph
    graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(deployed.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = graph.input[0].name
    seen: dict[str, list[list[np.ndarray]]] = {n: [] for n in names}
    for i in range(0, len(x), batch_size):
        outs = sess.run(names, {feed: np.ascontiguousarray(x[i: i + batch_size], np.float32)})
        for n, v in zip(names, outs, strict=True):
            a = np.abs(v)
            if n in split_of:  # one part per array: its output channels
                axis, channels = split_of[n]
                seen[n].append([np.moveaxis(a, axis, 0)[c].ravel() for c in channels])
            else:
                seen[n].append([a.ravel()])
    by_name = {n: [np.concatenate(p) for p in zip(*v, strict=True)] for n, v in seen.items()}
    # one converter, every node that reads the layer's weight: the percentile of all they convert
    parts = {tap: [np.concatenate(p) for p in zip(*(by_name[n] for n in tap), strict=True)]
             for dac, adcs in taps.values() for tap in ((dac,) if dac else ()) + adcs}
    level = {n: [_positive(float(np.percentile(p, percentile))) for p in ps] for n, ps in parts.items()}
    if adc_range == "max":
        reached = {n: [float(p.max(initial=0.0)) for p in ps] for n, ps in parts.items()}
        layers = {lay.name: lay for lay in report.plan.mapped}
        return {name: (level[dac][0] if dac else None,
                       _worst_case(layers[name], deployed, level, reached, dac, adcs, splits))
                for name, (dac, adcs) in taps.items()}
    return {name: (level[dac][0] if dac else None, tuple(_entry(level[a], a in splits) for a in adcs) or None)
            for name, (dac, adcs) in taps.items()}


def check_per(per: str) -> None:
    """``per`` names what one ADC range covers (``ADC_RANGES_PER``), else a one-line error naming the flag."""
    if per not in ADC_RANGES_PER:
        raise ConfigError(f"--adc-ranges-per: {per!r} is not one of {', '.join(ADC_RANGES_PER)}")


def _entry(values: list[float], per_array: bool) -> float | tuple[float, ...]:
    """A row tile's ``adc_range`` entry: one range per array, or the one its arrays share."""
    return tuple(values) if per_array else values[0]


def _splits(plan, taps: dict) -> dict[str, tuple[int, list[slice]]]:
    """ADC tap -> (its output channel axis, each array's channels) for the row tiles of more than one array."""
    out = {}
    for lay in plan.mapped:
        t = lay.tiles
        if lay.name in taps and t is not None and t.groups * t.col_tiles > 1:
            for a in taps[lay.name][1]:
                out[a] = (output_axis(lay.shape, graph_weight_first(lay)), array_channels(t))
    return out


def _worst_case(lay, deployed: onnx.ModelProto, level: dict, reached: dict, dac: str | None,
                adcs: tuple[str, ...], splits: dict) -> tuple[float | tuple[float, ...], ...] | None:
    """Row tile k's ADC range: rows_k x the DAC's range x max |W| (the layer's, or per array the array's), or
    what the data reached if more. ``deployed``: the clean deployed graph, whose weights have the plan's names
    (a folded ``W.T`` is named after its parameter there, not in the float model)."""
    if not adcs:
        return None
    if dac is None:
        raise ConfigError(f"--adc-range max: layer {lay.name!r} has an ADC but no DAC; the worst-case partial "
                          "sum needs the profile's io.input_bits (the DAC's range bounds the array's input)")
    w = next((np.abs(onnx.numpy_helper.to_array(i)) for i in deployed.graph.initializer if i.name == lay.weight),
             None)
    if w is None:
        raise ConfigError(f"--adc-range max: layer {lay.name!r}: its weight {lay.weight!r} is not an initializer")
    out = []
    for k, (rows, a) in enumerate(zip(tile_rows(lay), adcs, strict=True)):
        w_max = ([float(p.max(initial=0.0)) for p in array_weights(w, lay.out_axis, lay.tiles, k)] if a in splits
                 else [float(w.max(initial=0.0))])
        values = [max(rows * (level[dac][0] * m), r) or 1.0 for m, r in zip(w_max, reached[a], strict=True)]
        out.append(_entry(values, a in splits))
    return tuple(out)


def tile_rows(lay) -> list[int]:
    """The rows each row tile of a mapped layer uses (one entry for a layer of one tile)."""
    t = lay.tiles or tiling(lay.shape, lay.out_axis, lay.groups, 1, 1 << 30, 1 << 30, False, lay.name)
    full, last = t.channels_per_tile, t.in_channels - (t.row_tiles - 1) * t.channels_per_tile
    return [full * t.taps] * (t.row_tiles - 1) + [last * t.taps]


def _positive(v: float) -> float:
    """A range of 0 (a converter that only ever saw zeros) is 1, as the full-scale rule makes it."""
    return v if v > 0 else 1.0


Tap = tuple[str, ...]
"""The tensors one converter converts: one per graph node that reads the layer's weight (a layer called
twice has one DAC and one ADC per row tile, programmed once, converting both calls)."""


def _taps(deployed: onnx.ModelProto, plan) -> dict[str, tuple[Tap | None, tuple[Tap, ...]]]:
    """Layer -> (what its DAC converts, what its ADCs convert per row tile), found by the converters' node
    names (``nft/io/<node>/dac_abs``, ``.../adc_abs``, ``.../adc<k>_abs`` per row tile) of every node that
    reads the layer's weight."""
    by_name = {n.name: n for n in deployed.graph.node}
    out = {}
    for lay in plan.mapped:
        if not lay.has_converters:
            continue
        prefixes = [f"nft/io/{node}" for node in lay.nodes or (lay.node or lay.name,)]
        tiles = lay.tiles.row_tiles if lay.tiles is not None and lay.tiles.row_tiles > 1 else 0
        adcs = [f"adc{k}_abs" for k in range(tiles)] if tiles else ["adc_abs"]
        dac = tuple(n.input[0] for p in prefixes if (n := by_name.get(f"{p}/dac_abs")) is not None)
        out[lay.name] = (dac or None, tuple(tap for a in adcs if (tap := tuple(
            n.input[0] for p in prefixes if (n := by_name.get(f"{p}/{a}")) is not None))))
    return out


__all__ = ["ADC_RANGES", "ADC_RANGES_PER", "Ranges", "calibrate", "check_per", "clean_profile", "tile_rows"]
