"""Conductance drift, time-dependent read noise and drift compensation: the maths, once (numpy or torch).

How g relates to our weights (the conventions of ``nft_deploy.noise``): a weight ``W`` of a layer with scale
``s = max|W|`` (per layer or per channel) has the programmed level ``q = sign(w) round(|w| L) / L``,
``w = W / s``, ``L = 2^M - 1``. Its sign lives in a differential pair: only the cells of the side that carries
the sign are programmed, the other side sits at conductance 0 and does not drift (0 * anything). The
magnitude ``m = |q| L`` is split over ``C = ceil(M / K)`` cells of K bits, cell j holding the digit ``d_j``
(``m = sum_j d_j 2^(jK)``; with ``quantize: false`` cell 0 also holds the fraction below one level). A cell's
conductance normalised to its maximum is ``g_j = d_j / (2^K - 1)``, the g of the drift law.

Drift, per cell, fixed per chip: ``nu_j = |mu_nu(g_j) + sigma_nu(g_j) z_j|``, ``z_j ~ N(0, 1)`` drawn once per
chip (``chips.draw_chip``: after the normals and stuck-at uniforms of the layer), and at time t (seconds since
programming) ``g_j(t) = g_j (t_e / t0)^-nu_j`` with ``t_e = max(t, t0)`` (g_prog is the conductance read at
t0; the power law does not run backwards). The weight at t is

    W(t) = s [ sign(q) sum_j d_j 2^(jK) a_j / L  +  std_map(q) n a_n  +  stuck ],  a_j = (t_e / t0)^-nu_j,

where ``n`` is the chip's one programming normal per weight (``noise``): the programming error of the cells
drifts with them, ``a_n = sqrt(sum_j 4^(jK) a_j^2 / sum_j 4^(jK))`` making it exactly the Gaussian of std
``std_map(q) sqrt(sum_j 4^(jK) a_j^2 / sum_j 4^(jK))`` that per-cell errors drifting on their own would
give at t. Stuck-at changes do not drift (a stuck cell ignores programming).

Time-dependent read noise (``drift.read_noise``), redrawn per inference, per weight the std of its cells'
noise ``g_j(t) Q_j sqrt(ln((t_e + t_read) / (2 t_read)))``, ``Q_j = min(0.0088 / g_j^0.65, 0.2)``, combined:
``s / L sqrt(sum_j (d_j 2^(jK) a_j Q_j)^2) sqrt(ln(...))`` (g_j(t) from the target level; the programming
error's share of it is left out). It adds in quadrature to the profile's time-independent ``read_noise``.

Compensation (``drift.compensation``), one digital scale after each array: the calibration read is a fixed
batch of ``CALIBRATION_ROWS`` standard-normal input vectors (``calibration_input``: seeded by the layer's
fan-in, the same for every chip and time) through the chip's weight without read noise, at t0 and at t;
``global``: ``alpha = mean |Y(t0)| / mean |Y(t)|`` over the batch and every output; ``per_column``: one ratio
per output channel. A digital scale on the array's output equals the array read with its weight (and its
read noise) scaled: the bias is added after it, and the ADC's per-sample range is scale-equivariant, so the
engines fold ``alpha`` into the weight.
"""

from __future__ import annotations

import math
import re

import numpy as np

from nft_deploy.errors import ConfigError
from nft_deploy.profile_types import Drift, WeightSpec
from nft_deploy.quantize import _is_torch, _xp

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "y": 365.25 * 86400.0}
"""Seconds per unit of ``--time`` (y: a Julian year)."""
CALIBRATION_ROWS = 32
"""Input vectors of the compensation's calibration read."""
CALIBRATION_SEED = 0x6E667464  # "nftd"
TIME_INPUT = "nft.time"
"""The deployed graph's time input: seconds since programming, float32 of shape (1,)."""
DRIFT_INPUT_PREFIX = "nft.drift/"
"""Graph input of a layer's per-cell drift exponents nu, shape (cells, *weight shape), fed per chip."""


def parse_time(value) -> float:
    """Seconds of a ``--time`` value: a number (seconds) or ``<number><unit>`` with unit s, m, h, d or y."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([smhdy]?)\s*", str(value), re.IGNORECASE)
        if not found:
            raise ConfigError(f"--time: {value!r} is not a time; give a number with a unit s, m, h, d or y "
                              "(e.g. 1s,1h,1d,1y)")
        seconds = float(found.group(1)) * UNITS[(found.group(2) or "s").lower()]
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"--time: {value!r}: must be a time > 0")
    return float(np.float32(seconds))  # the graph reads it as float32: every engine uses that value


def time_label(seconds: float) -> str:
    """``1y``, ``1d``, ``20s``...: the largest unit that divides the time into a number of at most 3 digits."""
    for unit in "ydhm":
        n = seconds / UNITS[unit]
        if n >= 1 and abs(n - round(n, 3)) < 1e-6 * n:
            return f"{round(n, 3):g}{unit}"
    return f"{seconds:g}s"


# ---------------------------------------------------------------- the law of nu (numpy, float64)


def law_params(g: np.ndarray, drift: Drift) -> tuple[np.ndarray, np.ndarray]:
    """(mu_nu, sigma_nu) for normalised conductances ``g`` (clipped to [0, 1]) under ``drift.law``."""
    g = np.clip(np.asarray(g, np.float64), 0.0, 1.0)
    if drift.law == "pcm":
        lng = np.log(np.maximum(g, 1e-30))  # g -> 0 gives the clipped ends, as the law does
        return np.clip(-0.0155 * lng + 0.0244, 0.049, 0.1), np.clip(-0.0125 * lng - 0.0059, 0.008, 0.045)
    if drift.law == "constant":
        return np.full_like(g, drift.nu), np.full_like(g, drift.nu_std)
    pts = np.asarray(drift.table, np.float64)
    return np.interp(g, pts[:, 0], pts[:, 1]), np.interp(g, pts[:, 0], pts[:, 2])


def draw_nu(weights: WeightSpec, drift: Drift, digits: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``|mu_nu(g) + sigma_nu(g) z|`` per cell (float32), ``digits`` from ``cells``, ``z`` standard normals."""
    mu, sd = law_params(digits / (2**weights.bits_per_cell - 1), drift)
    return np.abs(mu + sd * z).astype(np.float32)


# ---------------------------------------------------------------- cells (numpy or torch)


def _column(values, like, ndim: int):
    """A (len(values), 1, ..., 1) array of ``values`` in the array library and dtype of ``like``."""
    a = np.asarray(values, np.float64).reshape((-1,) + (1,) * ndim)
    if _is_torch(like):
        import torch

        return torch.as_tensor(a, dtype=like.dtype, device=like.device)
    return a.astype(like.dtype)


def cells(magnitude, weights: WeightSpec):
    """(digits d_j, contributions d_j 2^(jK)), each of shape (cells, *magnitude.shape), of magnitudes ``m``
    in levels: ``hi_j = floor(m / 2^(jK))`` (``hi_0 = m``), ``d_j = hi_j - 2^K hi_(j+1)``; exact in float32."""
    xp, k, c, nd = _xp(magnitude), weights.bits_per_cell, weights.cells, magnitude.ndim
    m = magnitude[None]
    first = _column([1.0] + [0.0] * (c - 1), magnitude, nd)
    lo = xp.floor(m * _column([2.0 ** (-j * k) for j in range(c)], magnitude, nd)) + (m - xp.floor(m)) * first
    hi = xp.floor(m * _column([2.0 ** (-(j + 1) * k) for j in range(c)], magnitude, nd))
    digits = lo - hi * 2.0**k
    return digits, digits * _column([2.0 ** (j * k) for j in range(c)], magnitude, nd)


def levels(nm, w):
    """(sign, magnitude in levels) of normalised weights ``w`` as programmed (``noise.NoiseModel``)."""
    xp, spec = _xp(w), nm.weights
    if spec.quantize:
        q = nm.quantize_normalised(w)
        return xp.sign(q), xp.abs(xp.round(q * spec.levels))
    return xp.sign(w), xp.abs(w * spec.levels)


def factors(nu, seconds: float, drift: Drift):
    """``a = (max(t, t0) / t0)^-nu`` per cell."""
    xp = _xp(nu)
    return xp.exp(-nu * math.log(max(seconds, drift.t0) / drift.t0))


def noise_weights(weights: WeightSpec) -> list[float]:
    """``4^(jK) / sum_i 4^(iK)``: each cell's share of a weight's programming-error variance."""
    v = [4.0 ** (j * weights.bits_per_cell) for j in range(weights.cells)]
    return [x / sum(v) for x in v]


def read_growth(seconds: float, drift: Drift) -> float:
    """``sqrt(ln((t_e + t_read) / (2 t_read)))`` of the time-dependent read noise."""
    t = max(seconds, drift.t0)
    return math.sqrt(math.log((t + drift.t_read) / (2 * drift.t_read)))


def q_factor(digits, weights: WeightSpec):
    """``Q = min(0.0088 / g^0.65, 0.2)`` per cell, ``g = d / (2^K - 1)`` (0 where g = 0 contributes nothing)."""
    g = (digits / (2**weights.bits_per_cell - 1)).clip(min=1e-30)
    return (0.0088 * g**-0.65).clip(max=0.2)


# ---------------------------------------------------------------- compensation


def calibration_input(fan_in: int) -> np.ndarray:
    """The calibration read's inputs for a layer with ``fan_in`` inputs per output: (rows, fan_in) float32."""
    rng = np.random.default_rng(np.random.SeedSequence(CALIBRATION_SEED, spawn_key=(fan_in,)))
    return rng.standard_normal((CALIBRATION_ROWS, fan_in)).astype(np.float32)


def as_matrix(w, out_axis: int):
    """A weight as (fan_in, outputs): its output axis last, the rest flattened."""
    xp = _xp(w)
    moved = xp.moveaxis(w, out_axis % w.ndim, -1)
    return moved.reshape(-1, moved.shape[-1])


def compensation(w0, wt, out_axis: int, mode: str):
    """The digital scale that brings the calibration read of ``wt`` back to that of ``w0``: a scalar
    (``global``) or one per output channel shaped to broadcast over the weight (``per_column``)."""
    a0, at = as_matrix(w0, out_axis), as_matrix(wt, out_axis)
    x = calibration_input(a0.shape[0])
    x = _column(x.reshape(-1), a0, 0).reshape(x.shape)
    y0, yt = abs(x @ a0), abs(x @ at)
    if mode == "global":
        return y0.mean() / yt.mean().clip(min=1e-30)
    alpha = y0.mean(0) / yt.mean(0).clip(min=1e-30)
    shape = [1] * w0.ndim
    shape[out_axis % w0.ndim] = -1
    return alpha.reshape(shape)


# ---------------------------------------------------------------- one chip at one time


def draw_chip_nu(nm, weight: np.ndarray, rng: np.random.Generator, out_axis: int = 0) -> np.ndarray:
    """A layer's per-cell drift exponents for one chip, (cells, *W) float32: one normal per cell from ``rng``."""
    w = np.asarray(weight, np.float64)
    digits, _ = cells(levels(nm, w / nm.scale(w, out_axis))[1], nm.weights)
    return draw_nu(nm.weights, nm.profile.drift, digits, rng.standard_normal(digits.shape))


def _like(a, ref):
    if _is_torch(ref):
        import torch

        return torch.as_tensor(a, dtype=ref.dtype, device=ref.device)
    return np.asarray(a, ref.dtype)


def read_at(nm, weight, draw, out_axis: int, seconds: float):
    """(weight read at ``seconds``, compensated; std of its read noise or None) for one chip's ``draw`` (a
    ``noise.ChipDraw``; ``nu`` None: the ideal chip, no drift). numpy (float64) or torch (the weight's dtype)."""
    drift, spec = nm.profile.drift, nm.weights
    xp = _xp(weight)
    s = nm.scale(weight, out_axis)
    w = weight / s
    q = nm.quantize_normalised(w)
    sign, m = levels(nm, w)
    varied = nm.std_map(q) * _like(draw.normal, w)
    stuck = 0.0 if draw.stuck_delta is None else _like(draw.stuck_delta, w)
    digits, contrib = cells(m, spec)
    a = factors(_like(np.zeros(contrib.shape) if draw.nu is None else draw.nu, w), seconds, drift)
    a_n = xp.sqrt((a * a * _column(noise_weights(spec), w, w.ndim)).sum(0))
    w0 = s * (q + varied + stuck)
    wt = s * (sign * (contrib * a).sum(0) / spec.levels + varied * a_n + stuck)
    alpha = 1.0 if drift.compensation == "none" else compensation(w0, wt, out_axis, drift.compensation)
    var = 0.0
    if drift.read_noise:
        cell = contrib * a * q_factor(digits, spec)
        var = (s / spec.levels) ** 2 * (cell * cell).sum(0) * read_growth(seconds, drift) ** 2
    if nm.read_std > 0:
        var = var + (s * nm.read_std) ** 2
    std = None if not (drift.read_noise or nm.read_std > 0) else xp.sqrt(var + xp.zeros_like(w)) * alpha
    return wt * alpha, std


def perturb(nm, weight, generator=None, out_axis: int = 0):
    """A training forward's noisy copy of ``weight`` (torch): ``NoiseModel.perturb``, unless the profile's
    ``drift.train_time`` is set; then a fresh chip (normals, stuck-at, one nu per cell) read at that time with
    the compensation and read noise, straight-through (gradient 1 w.r.t. ``weight``)."""
    dr = nm.profile.drift
    if dr is None or dr.train_time is None:
        return nm.perturb(weight, generator, out_axis)
    import torch

    from nft_deploy.noise import ChipDraw
    from nft_deploy.quantize import _ste

    w = weight.detach()
    normal = torch.randn(w.shape, generator=generator, dtype=w.dtype, device=w.device)
    w64 = w.cpu().double().numpy()
    digits, _ = cells(levels(nm, w64 / nm.scale(w64, out_axis))[1], nm.weights)
    z = torch.randn(digits.shape, generator=generator, dtype=torch.float64, device=w.device).cpu().numpy()
    stuck = None
    if nm.has_stuck_at:
        u = torch.rand((nm.weights.cells, *w.shape), generator=generator, dtype=torch.float64, device=w.device)
        stuck = nm.stuck_delta(w64, u.cpu().numpy(), out_axis)
    draw = ChipDraw(normal, stuck, draw_nu(nm.weights, dr, digits, z))
    read, std = read_at(nm, w, draw, out_axis, dr.train_time)
    if std is not None:
        read = read + std * torch.randn(w.shape, generator=generator, dtype=w.dtype, device=w.device)
    return _ste(weight, read)


__all__ = ["CALIBRATION_ROWS", "DRIFT_INPUT_PREFIX", "TIME_INPUT", "UNITS", "as_matrix", "calibration_input",
           "cells", "compensation", "draw_chip_nu", "draw_nu", "factors", "law_params", "levels", "noise_weights",
           "parse_time", "perturb", "q_factor", "read_at", "read_growth", "time_label"]
