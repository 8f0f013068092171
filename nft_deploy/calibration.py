"""Calibrated converter ranges (``export --calibrate DATA``).

Without calibration a DAC or ADC spans today's full-scale range: per sample, ``max |x|`` of the tensor it
converts. With calibration each converter gets one fixed range, set once at export: the clean deployed graph
(the profile with no programming variation, read noise, stuck-at faults or drift: quantized weights and the
converters only) runs on the calibration inputs, and each DAC's range is the ``percentile`` of ``|x|`` over
every element of its input, each ADC's the same over its input: per row tile where the layer spans several
(each row tile's partial sum has its own range), else per layer. A converter with a fixed range ``m`` clips:
``round(clip(x / m * L, -L, L)) * m / L``.

``adc_range="max"`` sets each ADC instead to the largest partial sum its array can produce, the fixed
worst-case full scale of a converter that is not calibrated (CrossSim's ``adc_range_option`` MAX): row tile
``k``'s range is ``rows_k * dac_range * max |W|`` (its rows times the DAC's calibrated full input times the
layer's largest weight), never below the largest value the calibration data reaches (a bias joins row tile
0). It needs a DAC (``io.input_bits``): the DAC's range is what bounds the array's input. The ranges are the plan's (``LayerPlan.dac_range``,
``LayerPlan.adc_range``): they are written as graph constants and in ``nft.plan``, and the torch engine
reads them from the deployed model's plan.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from nft_deploy.arrays import tiling
from nft_deploy.errors import ConfigError
from nft_deploy.profiles import DeviceProfile, ReadNoise, StuckAt

Ranges = dict[str, tuple[float | None, tuple[float, ...] | None]]
"""Layer name -> (DAC range or None, ADC ranges per row tile or None)."""


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


def calibrate(float_model: onnx.ModelProto, profile: DeviceProfile, x: np.ndarray, percentile: float = 99.99,
              batch_size: int = 64, adc_range: str = "percentile") -> Ranges:
    """Each mapped layer's converter ranges from the clean deployed graph run on ``x`` (module docstring)."""
    import onnxruntime as ort

    from nft_deploy.converters.graph_pass import run_pass

    if not 0 < percentile <= 100:
        raise ConfigError(f"--percentile: must be in (0, 100], got {percentile:g}")
    if adc_range not in ADC_RANGES:
        raise ConfigError(f"--adc-range: {adc_range!r} is not one of {', '.join(ADC_RANGES)}")
    if len(x) == 0:
        raise ConfigError("--calibrate: the calibration data holds no sample")
    deployed, report = run_pass(float_model, clean_profile(profile))
    taps = _taps(deployed, report.plan)
    names = sorted({t for dac, adcs in taps.values() for t in ((dac,) if dac else ()) + adcs})
    if not names:
        return {}
    graph = deployed.graph
    graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(deployed.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = graph.input[0].name
    seen: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in range(0, len(x), batch_size):
        outs = sess.run(names, {feed: np.ascontiguousarray(x[i: i + batch_size], np.float32)})
        for n, v in zip(names, outs, strict=True):
            seen[n].append(np.abs(v).ravel())
    level = {n: _positive(float(np.percentile(np.concatenate(v), percentile))) for n, v in seen.items()}
    if adc_range == "max":
        reached = {n: float(np.concatenate(v).max(initial=0.0)) for n, v in seen.items()}
        layers = {lay.name: lay for lay in report.plan.mapped}
        return {name: (level[dac] if dac else None,
                       _worst_case(layers[name], float_model, level, reached, dac, adcs))
                for name, (dac, adcs) in taps.items()}
    return {name: (level[dac] if dac else None, tuple(level[a] for a in adcs) or None)
            for name, (dac, adcs) in taps.items()}


def _worst_case(lay, float_model: onnx.ModelProto, level: dict, reached: dict, dac: str | None,
                adcs: tuple[str, ...]) -> tuple[float, ...] | None:
    """Row tile k's ADC range: rows_k x the DAC's range x max |W|, or what the data reached if more."""
    if not adcs:
        return None
    if dac is None:
        raise ConfigError(f"--adc-range max: layer {lay.name!r} has an ADC but no DAC; the worst-case partial "
                          "sum needs the profile's io.input_bits (the DAC's range bounds the array's input)")
    w = max((float(np.abs(onnx.numpy_helper.to_array(i)).max(initial=0.0)) for i in float_model.graph.initializer
             if i.name == lay.weight), default=None)
    if w is None:
        raise ConfigError(f"--adc-range max: layer {lay.name!r}: its weight {lay.weight!r} is not an initializer")
    bound = level[dac] * w
    return tuple(max(rows * bound, reached[a]) or 1.0 for rows, a in zip(tile_rows(lay), adcs, strict=True))


def tile_rows(lay) -> list[int]:
    """The rows each row tile of a mapped layer uses (one entry for a layer of one tile)."""
    t = lay.tiles or tiling(lay.shape, lay.out_axis, lay.groups, 1, 1 << 30, 1 << 30, False, lay.name)
    full, last = t.channels_per_tile, t.in_channels - (t.row_tiles - 1) * t.channels_per_tile
    return [full * t.taps] * (t.row_tiles - 1) + [last * t.taps]


def _positive(v: float) -> float:
    """A range of 0 (a converter that only ever saw zeros) is 1, as the full-scale rule makes it."""
    return v if v > 0 else 1.0


def _taps(deployed: onnx.ModelProto, plan) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """Layer -> (the tensor its DAC converts, the tensors its ADCs convert), found by the converters' node
    names (``nft/io/<node>/dac_abs``, ``.../adc_abs``, ``.../adc<k>_abs`` per row tile)."""
    by_name = {n.name: n for n in deployed.graph.node}
    out = {}
    for lay in plan.mapped:
        if not lay.has_converters:
            continue
        prefix = f"nft/io/{lay.node or lay.name}"
        dac = by_name.get(f"{prefix}/dac_abs")
        tiles = lay.tiles.row_tiles if lay.tiles is not None and lay.tiles.row_tiles > 1 else 0
        adc_nodes = [by_name.get(f"{prefix}/adc{k}_abs") for k in range(tiles)] if tiles else [by_name.get(
            f"{prefix}/adc_abs")]
        out[lay.name] = (dac.input[0] if dac is not None else None,
                         tuple(n.input[0] for n in adc_nodes if n is not None))
    return out


__all__ = ["ADC_RANGES", "Ranges", "calibrate", "clean_profile", "tile_rows"]
