"""The one CIM noise model: quantization, programming variation, read noise and stuck-at faults.

Training (torch), the ONNX graph pass and the evaluator (numpy) all take their maths from here.

Pipeline for one layer's weight ``W`` (``out_axis`` is the output-channel axis, 0 for torch Conv/Linear):

1. ``scale = max|W|`` per layer or per output channel (detached: no gradient through it);
2. ``w = W / scale``; quantized to ``q = sign(w) * round(|w| * L) / L`` with ``L = 2^M - 1`` (straight-
   through gradient in training), or kept float when the profile says ``quantize: false``;
3. the magnitude ``|q| * L`` is split into ``C = ceil(M/K)`` cells of K bits: cell ``j`` holds digit
   ``d_j`` and conductance ``g_j = d_j / (2^K - 1)`` in [0, 1];
4. programming variation adds ``sigma_cell * n_j`` to every cell (``n_j ~ N(0, 1)``, fixed per chip);
   recombined, the weight gets Gaussian noise of std (in units of ``scale``)
   ``sigma_cell * (2^K - 1) * sqrt(sum_j 4^(jK)) / (2^M - 1)``; for M = 8, K = 2 that is
   ``0.7776 * sigma_cell``, the NFT reference formula. The state-dependent variant multiplies the std
   of weights with ``band[0] < |q| < band[1]`` by ``s`` and divides sigma by ``sqrt(f s^2 + 1 - f)``;
5. stuck-at faults replace a cell's conductance with 0 or 1 (fixed per chip);
6. read noise adds fresh per-cell Gaussian noise on every inference, recombined the same way.

Because per-cell Gaussian noise sums to per-weight Gaussian noise, the draw is one standard normal per
weight (``ChipDraw.normal``); stuck-at faults need one uniform per cell. The closed-form std of step 4
is ``NoiseModel.weight_std`` and nothing else re-derives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nft_deploy.profiles import DeviceProfile, WeightSpec
from nft_deploy.quantize import _amax, _is_float, _is_torch, _ste, _xp, quantize_activation

if TYPE_CHECKING:  # torch is imported where it is used: the numpy path and the closed forms do not need it
    import torch

ZERO_SCALE = 1e-30
"""Scale used for an all-zero layer or channel: safe to divide by (also in float32 and as a QDQ scale), and
small enough that the noise it carries, ``std * ZERO_SCALE``, is zero for every practical purpose, as the
closed form ``sigma_W = k * sigma * max|W| = 0`` says."""

DRAW_CHUNK = 1 << 20
"""Random numbers per generator call when drawing a chip (bounds a large layer's float64 temporaries)."""


def cell_std_factor(weights: WeightSpec) -> float:
    """Std of a weight (in units of its scale) per unit of cell noise (cell_range): closed form.

    ``(2^K - 1) * sqrt(sum_j 4^(jK)) / (2^M - 1)`` over the ``ceil(M/K)`` cells; equals the reference
    ``sqrt(sum_j 2^(2jK)) / sum_j 2^(jK)`` when K divides M (0.7776 for M=8, K=2).
    """
    k, c = weights.bits_per_cell, weights.cells
    return (2**k - 1) * math.sqrt(sum(4 ** (j * k) for j in range(c))) / weights.levels


def to_cell_range(sigma: float, unit: str, bits_per_cell: int) -> float:
    """A sigma in ``cell_range`` units; ``level`` sigmas are (2^K - 1) times smaller."""
    return sigma if unit == "cell_range" else sigma / (2**bits_per_cell - 1)


@dataclass(frozen=True)
class ChipDraw:
    """The random numbers that define one programmed instance of one layer (numpy)."""

    normal: np.ndarray
    """Standard normal per weight, shape of W: the programming variation (float32, as the graph reads it)."""
    stuck_delta: np.ndarray | None = None
    """Change of the normalised weight caused by stuck-at faults, shape of W; None without faults."""
    nu: np.ndarray | None = None
    """Drift exponent per cell, shape (cells, *W) float32 (``nft_deploy.drift``); None without drift."""


@dataclass(frozen=True)
class NoiseModel:
    """The device maths of one layer (or of a whole model where no override applies)."""

    profile: DeviceProfile

    @classmethod
    def for_layer(cls, profile: DeviceProfile, layer: str) -> NoiseModel:
        """The noise model that applies to ``layer`` (overrides resolved)."""
        return cls(profile.for_layer(layer))

    # ------------------------------------------------------------ closed forms

    @property
    def weights(self) -> WeightSpec:
        return self.profile.weights

    @property
    def sigma_cell(self) -> float:
        """Programming sigma per cell in cell_range units, renormalised when state-dependent."""
        p = self.profile.programming
        sigma = to_cell_range(p.sigma, p.unit, self.weights.bits_per_cell)
        sd = p.state_dependent
        if sd is not None and sd.renormalize_fraction is not None:
            f = sd.renormalize_fraction
            sigma /= math.sqrt(f * sd.factor**2 + 1 - f)
        return sigma

    @property
    def weight_std(self) -> float:
        """Closed-form std of the programming noise of a weight, in units of its scale (before any
        state-dependent factor). Multiply by max|W| for absolute units."""
        return self.sigma_cell * cell_std_factor(self.weights)

    @property
    def read_std(self) -> float:
        """Closed-form std of the read noise of a weight, in units of its scale."""
        r = self.profile.read_noise
        return to_cell_range(r.sigma, r.unit, self.weights.bits_per_cell) * cell_std_factor(self.weights)

    @property
    def has_stuck_at(self) -> bool:
        s = self.profile.stuck_at
        return s.zero_rate + s.full_rate > 0

    def with_sigma(self, sigma: float) -> NoiseModel:
        """The same model with the programming sigma replaced (profile unit)."""
        return NoiseModel(self.profile.with_sigma(sigma))

    def effective_weight_std(self, max_abs: float) -> float:
        """Closed-form programming-noise std of a weight in absolute units for a layer with this max|W|."""
        return self.weight_std * max_abs

    # ------------------------------------------------------------ deterministic maths (torch or numpy)

    def scale(self, w, out_axis: int = 0):
        """max|W| per layer (shape of a scalar broadcast) or per output channel (keeps dims).

        A 1-D (or 0-D) weight has no channel axis to spare and always gets one per-layer scale. Zero scales
        become ``ZERO_SCALE``: an all-zero layer or channel stays zero (no noise) instead of dividing by 0.
        """
        xp = _xp(w)
        a = xp.abs(w)
        if self.weights.scale == "per_channel" and w.ndim > 1:
            axes = tuple(i for i in range(w.ndim) if i != out_axis % w.ndim)
            s = _amax(a, axes)
        else:
            s = _amax(a, tuple(range(w.ndim)))
        floor = max(ZERO_SCALE, float(xp.finfo(s.dtype).tiny)) if _is_float(s) else ZERO_SCALE  # float16: 6e-5
        return xp.where(s > 0, s, xp.full_like(s, floor))

    def quantize_normalised(self, w):
        """Normalised weight -> programmed level, ``sign(w) * round(|w| L) / L`` (identity if not quantized)."""
        if not self.weights.quantize:
            return w
        xp, levels = _xp(w), self.weights.levels
        return xp.sign(w) * xp.round(xp.abs(w) * levels) / levels

    def std_map(self, q):
        """Per-weight programming std in units of scale, for programmed levels ``q`` (state-dependent aware)."""
        base = _xp(q).full_like(q, self.weight_std)
        sd = self.profile.programming.state_dependent
        if sd is None or sd.factor == 1.0:
            return base
        mask = self.state_mask(q)
        mask = mask.to(q.dtype) if _is_torch(mask) else mask.astype(q.dtype)
        return base * (1.0 + (sd.factor - 1.0) * mask)

    def state_mask(self, q):
        """True where the state-dependent factor applies (band[0] < |q| < band[1], 0.25..0.75 by default)."""
        sd = self.profile.programming.state_dependent
        xp = _xp(q)
        a = xp.abs(q)
        if sd is None:
            return xp.zeros_like(a, dtype=xp.bool)
        return (a > sd.band[0]) & (a < sd.band[1])

    # ------------------------------------------------------------ numpy: deployment

    def draw_chip(self, shape: tuple[int, ...], rng: np.random.Generator, weight: np.ndarray | None = None,
                  out_axis: int = 0) -> ChipDraw:
        """One programmed chip's random numbers for a layer: normals, then stuck-at uniforms per cell.

        Normals in float32 (what the chip inputs carry), drawn ``DRAW_CHUNK`` at a time so that a large layer
        needs no float64 copy of itself; of the uniforms only those of stuck cells are kept. The numbers are those
        of one ``rng.standard_normal(shape)`` and one ``rng.random((cells, *shape))`` call (numpy's
        generators give the same stream in chunks). ``weight`` is needed only with stuck-at faults.
        """
        n = math.prod(shape)
        normal = np.empty(n, np.float32)
        for i in range(0, n, DRAW_CHUNK):
            normal[i:i + DRAW_CHUNK] = rng.standard_normal(min(DRAW_CHUNK, n - i))
        if not self.has_stuck_at:
            return ChipDraw(normal=normal.reshape(shape))
        if weight is None:
            raise ValueError("draw_chip needs the weight when the profile has stuck-at faults")
        rate = self.profile.stuck_at.zero_rate + self.profile.stuck_at.full_rate
        stuck = []  # per cell: (flat index, uniform) of its stuck cells
        for _ in range(self.weights.cells):
            found = [(np.flatnonzero(u < rate) + i, u[u < rate]) for i in range(0, n, DRAW_CHUNK)
                     for u in [rng.random(min(DRAW_CHUNK, n - i))]]
            stuck.append((np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])))
        hit = np.unique(np.concatenate([idx for idx, _ in stuck]))
        u_hit = np.ones((self.weights.cells, hit.size))  # a cell that is not stuck keeps its level
        for j, (idx, u) in enumerate(stuck):
            u_hit[j, np.searchsorted(hit, idx)] = u
        w = np.atleast_1d(weight)  # a scalar weight: one per-layer scale either way
        s = np.broadcast_to(np.asarray(self.scale(w, out_axis), np.float64), w.shape)[np.unravel_index(hit, w.shape)]
        delta = np.zeros(n)  # float64: the exact complement of a level (a stuck-at-0 weight sums to 0)
        delta[hit] = self._stuck_change(np.reshape(w, -1)[hit].astype(np.float64) / s, u_hit)
        return ChipDraw(normal=normal.reshape(shape), stuck_delta=delta.reshape(shape))

    def stuck_delta(self, weight: np.ndarray, uniforms: np.ndarray, out_axis: int = 0) -> np.ndarray:
        """Normalised weight change from stuck cells; ``uniforms`` has shape (cells, *W.shape).

        Cell ``j`` is stuck at 0 where ``u_j < zero_rate``, at full conductance where
        ``zero_rate <= u_j < zero_rate + full_rate``. A float weight (``quantize: false``) keeps its part
        below one level in cell 0, so every cell stuck at zero gives exactly 0 in both modes. Programming
        noise still applies to the whole weight (one normal per weight; an approximation for stuck cells).
        """
        st = self.profile.stuck_at
        w = weight / self.scale(weight, out_axis)
        delta = np.zeros(w.size)
        flat_u = np.reshape(uniforms, (self.weights.cells, w.size))
        hit = np.flatnonzero((flat_u < st.zero_rate + st.full_rate).any(axis=0))  # faults are rare: only those
        delta[hit] = self._stuck_change(np.reshape(w, -1)[hit], flat_u[:, hit])
        return delta.reshape(np.shape(weight))

    def _stuck_change(self, w: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``stuck_delta`` of normalised weights ``w`` (1-D) whose cells drew uniforms ``u`` (cells, len(w))."""
        wspec, st = self.weights, self.profile.stuck_at
        q = self.quantize_normalised(w)
        mag = np.round(np.abs(q) * wspec.levels).astype(np.int64)
        resid = np.abs(q) * wspec.levels - mag  # 0 for quantized weights
        k, cell_max = wspec.bits_per_cell, 2**wspec.bits_per_cell - 1
        d = np.zeros_like(w)
        for j in range(wspec.cells):
            g = ((mag >> (j * k)) & cell_max) / cell_max
            if j == 0:
                g = g + resid / cell_max
            stuck = np.where(u[j] < st.zero_rate, 0.0, np.where(u[j] < st.zero_rate + st.full_rate, 1.0, g))
            d += (stuck - g) * cell_max * 2 ** (j * k) / wspec.levels
        return np.where(w >= 0, 1.0, -1.0) * d

    def apply_chip(self, weight: np.ndarray, draw: ChipDraw, out_axis: int = 0) -> np.ndarray:
        """The weight as programmed on one chip (float64): ``scale * (q + std_map(q) * n + stuck_delta)``."""
        w = np.asarray(weight, np.float64)
        s = self.scale(w, out_axis)
        q = self.quantize_normalised(w / s)
        noisy = q + self.std_map(q) * draw.normal
        if draw.stuck_delta is not None:
            noisy = noisy + draw.stuck_delta
        return s * noisy

    def sample_chip(self, weight: np.ndarray, rng: np.random.Generator, out_axis: int = 0) -> np.ndarray:
        """Draw and apply one chip: the programmed weight of a freshly seeded chip."""
        return self.apply_chip(weight, self.draw_chip(np.shape(weight), rng, weight, out_axis), out_axis)

    def read_noise(self, weight: np.ndarray, rng: np.random.Generator, out_axis: int = 0) -> np.ndarray:
        """Additive read noise for one inference, absolute units (zeros when read noise is off)."""
        if self.read_std == 0:
            return np.zeros(np.shape(weight))
        return self.scale(np.asarray(weight, np.float64), out_axis) * self.read_std * rng.standard_normal(np.shape(weight))

    # ------------------------------------------------------------ torch: training

    def perturb(self, weight: torch.Tensor, generator: torch.Generator | None = None, out_axis: int = 0,
                read: bool = True) -> torch.Tensor:
        """A fresh noisy copy of ``weight`` for one training forward.

        Differentiable w.r.t. ``weight`` with gradient exactly 1 (straight-through rounding); the scale and
        the noise carry no gradient. Includes programming variation, stuck-at faults and (``read``) read
        noise. Same distribution as ``sample_chip`` (plus read noise), different random stream.
        """
        import torch

        w = weight.detach()
        s = self.scale(w, out_axis)
        q = self.quantize_normalised(w / s)
        std = self.std_map(q)
        if self.read_std > 0 and read:
            std = torch.sqrt(std**2 + self.read_std**2)
        noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype, device=weight.device) * std
        out = q + noise
        if self.has_stuck_at:
            dev = generator.device if generator is not None else None  # a CUDA generator draws on CUDA
            g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device=dev)))
            u = torch.rand((self.weights.cells, *weight.shape), generator=g, dtype=torch.float64).numpy()
            delta = self.stuck_delta(w.cpu().double().numpy(), u, out_axis)
            out = out + torch.as_tensor(delta, dtype=weight.dtype, device=weight.device)
        return _ste(weight, s * out)

    def apply_chip_torch(self, weight: torch.Tensor, draw: ChipDraw, out_axis: int = 0) -> torch.Tensor:
        """``apply_chip`` in torch (same draw, same numbers), for torch-side Monte Carlo and parity tests."""
        import torch

        s = self.scale(weight.detach(), out_axis)
        q = self.quantize_normalised(weight / s)
        out = q + self.std_map(q) * torch.as_tensor(draw.normal, dtype=weight.dtype, device=weight.device)
        if draw.stuck_delta is not None:
            out = out + torch.as_tensor(draw.stuck_delta, dtype=weight.dtype, device=weight.device)
        return s * out


__all__ = ["ZERO_SCALE", "ChipDraw", "NoiseModel", "cell_std_factor", "quantize_activation", "to_cell_range"]
