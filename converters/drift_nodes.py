"""The nodes of drift: a programmed weight read at the graph's time input, compensated, with its read noise.

``nft_deploy.drift`` defines the maths; these standard ONNX ops compute the same, in the same order, from
the layer's float weight, its chip inputs (``nft.chip``, ``nft.stuck``, ``nft.drift``: the per-cell drift
exponents) and ``nft.time`` (seconds since programming, shape (1,)). Everything here depends on those
only, so the evaluator programs it once per chip and time (``evaluation.programming``), and stock ONNX
Runtime runs the deployed graph with a time fed like any input.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_graphsurgeon as gs

from nft_deploy.device_plan import LayerPlan
from nft_deploy.drift import TIME_INPUT, calibration_input, noise_weights


def time_input(graph: gs.Graph) -> gs.Variable:
    """The graph's ``nft.time`` input, added by the first drifting layer and shared by the others."""
    for t in graph.inputs:
        if t.name == TIME_INPUT:
            return t
    t = gs.Variable(TIME_INPUT, dtype=np.float32, shape=[1])
    graph.inputs.append(t)
    return t


def _reduce_sum(em, x, axes: list[int], name: str, opset: int):
    if opset >= 13:
        return em.op("ReduceSum", [x, em.const(f"{name}_axes", np.array(axes, np.int64))], name, {"keepdims": 0})
    return em.op("ReduceSum", [x], name, {"axes": axes, "keepdims": 0})


def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def build_drift(em, graph: gs.Graph, lay: LayerPlan, weight: gs.Constant, scale: np.ndarray, quantized,
                variation, stuck, w0, opset: int):
    """(weight read at ``nft.time`` and compensated, std tensor of its read noise or None); ``quantized``,
    ``variation`` and ``stuck`` are the layer's terms (None where absent) and ``w0`` their sum (the read at t0)."""
    nm, dr = lay.noise, lay.device.drift
    spec, nd = nm.weights, len(weight.shape)
    k, c = spec.bits_per_cell, spec.cells
    nu = gs.Variable(lay.drift_input, dtype=np.float32, shape=[c, *weight.shape])
    graph.inputs.append(nu)
    t = time_input(graph)

    def col(name, values):
        return em.const(name, _f32(values).reshape((-1,) + (1,) * nd))

    step = em.const("drift_step", _f32(scale / spec.levels))
    if spec.quantize:
        lv = em.op("Round", [em.op("Div", [quantized, step], "drift_unstep")], "drift_levels")
    else:
        norm = em.op("Div", [weight, em.const("drift_scale", _f32(scale))], "drift_normalised")
        lv = em.op("Mul", [norm, em.const("drift_L", _f32(spec.levels))], "drift_levels")
    sign, m = em.op("Sign", [lv], "drift_sign"), em.op("Abs", [lv], "drift_magnitude")
    frac = em.op("Sub", [m, em.op("Floor", [m], "drift_floor")], "drift_fraction")
    lo = em.op("Floor", [em.op("Mul", [m, col("drift_lo", [2.0 ** (-j * k) for j in range(c)])], "drift_lo_s")],
               "drift_lo_f")
    lo = em.op("Add", [lo, em.op("Mul", [frac, col("drift_first", [1.0] + [0.0] * (c - 1))], "drift_frac0")],
               "drift_hi_lo")
    hi = em.op("Floor", [em.op("Mul", [m, col("drift_hi", [2.0 ** (-(j + 1) * k) for j in range(c)])],
                               "drift_hi_s")], "drift_hi_f")
    digits = em.op("Sub", [lo, em.op("Mul", [hi, em.const("drift_base", _f32(2.0**k))], "drift_carry")],
                   "drift_digits")
    contrib = em.op("Mul", [digits, col("drift_pow", [2.0 ** (j * k) for j in range(c)])], "drift_contrib")

    t0 = em.const("drift_t0", _f32([dr.t0]))
    te = em.op("Max", [t, t0], "drift_te")
    lt = em.op("Log", [em.op("Div", [te, t0], "drift_tr")], "drift_logt")
    a = em.op("Exp", [em.op("Mul", [em.op("Neg", [nu], "drift_negnu"), lt], "drift_expo")], "drift_a")
    a2 = em.op("Mul", [em.op("Mul", [a, a], "drift_a2"), col("drift_noise_w", noise_weights(spec))], "drift_a2w")
    a_n = em.op("Sqrt", [_reduce_sum(em, a2, [0], "drift_a2sum", opset)], "drift_an")
    total = _reduce_sum(em, em.op("Mul", [contrib, a], "drift_ca"), [0], "drift_sum", opset)
    wt = em.op("Mul", [em.op("Mul", [sign, total], "drift_signed"), step], "drift_levels_t")
    if variation is not None:
        wt = em.op("Add", [wt, em.op("Mul", [variation, a_n], "drift_variation")], "drift_varied")
    if stuck is not None:
        wt = em.op("Add", [wt, stuck], "drift_stuck")
    alpha = _compensation(em, lay, weight, w0, wt, opset)
    if alpha is not None:
        wt = em.op("Mul", [wt, alpha], "drift_compensated")
    return wt, _read_std(em, lay, scale, digits, contrib, a, te, alpha, opset)


def _compensation(em, lay: LayerPlan, weight: gs.Constant, w0, wt, opset: int):
    """The digital scale (``drift.compensation``) from the calibration read of ``w0`` and ``wt``, or None."""
    mode = lay.device.drift.compensation
    if mode == "none":
        return None
    shape, axis = [int(d) for d in weight.shape], lay.out_axis % len(weight.shape)
    perm = [i for i in range(len(shape)) if i != axis] + [axis]
    fan_in, outs = math.prod(shape) // shape[axis], shape[axis]
    x = em.const("drift_calibration", calibration_input(fan_in))
    as_matrix = em.const("drift_matrix", np.array([fan_in, outs], np.int64))
    means = []
    for tag, w in (("t0", w0), ("t", wt)):
        mat = em.op("Reshape", [em.op("Transpose", [w], f"drift_{tag}_moved", {"perm": perm}), as_matrix],
                    f"drift_{tag}_matrix")
        y = em.op("Abs", [em.op("MatMul", [x, mat], f"drift_{tag}_read")], f"drift_{tag}_abs")
        axes, count = ([0, 1], x.values.shape[0] * outs) if mode == "global" else ([0], x.values.shape[0])
        s = _reduce_sum(em, y, axes, f"drift_{tag}_sum", opset)
        means.append(em.op("Div", [s, em.const(f"drift_count_{tag}", _f32(count))], f"drift_{tag}_mean"))
    floor = em.op("Max", [means[1], em.const("drift_tiny", _f32(1e-30))], "drift_t_floor")
    alpha = em.op("Div", [means[0], floor], "drift_alpha")
    if mode == "per_column":
        out_shape = [1] * len(shape)
        out_shape[axis] = -1
        alpha = em.op("Reshape", [alpha, em.const("drift_alpha_shape", np.array(out_shape, np.int64))],
                      "drift_alpha_column")
    return alpha


def _read_std(em, lay: LayerPlan, scale: np.ndarray, digits, contrib, a, te, alpha, opset: int):
    """Std of the read noise at ``nft.time``: the time-dependent part in quadrature with ``read_noise``,
    times the compensation; None without read noise."""
    nm, dr = lay.noise, lay.device.drift
    spec = nm.weights
    var = None
    if dr.read_noise:
        growth = em.op("Sqrt", [em.op("Log", [em.op("Div", [
            em.op("Add", [te, em.const("drift_tread", _f32(dr.t_read))], "drift_tplus"),
            em.const("drift_2tread", _f32(2 * dr.t_read))], "drift_tratio")], "drift_tlog")], "drift_growth")
        g = em.op("Div", [digits, em.const("drift_gmax", _f32(2**spec.bits_per_cell - 1))], "drift_g")
        g = em.op("Max", [g, em.const("drift_tiny_g", _f32(1e-30))], "drift_g_floor")
        q = em.op("Mul", [em.op("Pow", [g, em.const("drift_q_exp", _f32(-0.65))], "drift_g_pow"),
                          em.const("drift_q_c", _f32(0.0088))], "drift_q_raw")
        q = em.op("Min", [q, em.const("drift_q_max", _f32(0.2))], "drift_q")
        cell = em.op("Mul", [em.op("Mul", [contrib, a], "drift_cell_t"), q], "drift_cell_noise")
        rs = em.op("Sqrt", [_reduce_sum(em, em.op("Mul", [cell, cell], "drift_cell_sq"), [0], "drift_cell_var",
                                        opset)], "drift_cell_std")
        rs = em.op("Mul", [em.op("Mul", [rs, em.const("drift_read_step", _f32(scale / spec.levels))],
                                 "drift_read_abs"), growth], "drift_read_t")
        var = em.op("Mul", [rs, rs], "drift_read_var")
    if nm.read_std > 0:
        const = em.const("drift_read_const", _f32((scale * nm.read_std) ** 2))
        var = const if var is None else em.op("Add", [var, const], "drift_read_total")
    if var is None:
        return None
    std = em.op("Sqrt", [var], "drift_read_std")
    return std if alpha is None else em.op("Mul", [std, alpha], "drift_read_compensated")


__all__ = ["build_drift", "time_input"]
