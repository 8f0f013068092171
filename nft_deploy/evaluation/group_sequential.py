"""The exact group-sequential binomial test behind percentile gates: pass and fail boundaries on the count
of chips below a threshold, over a fixed look schedule, by exact dynamic programming (Jennison & Turnbull,
*Group Sequential Methods with Applications to Clinical Trials*, 2000, ch. 12; error spending alpha t^rho,
Kim & DeMets 1987)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

SPENDING_RHO = 0.25
"""Exponent of the percentile test's error spending alpha t^rho (Kim & DeMets 1987; Jennison & Turnbull
2000, sec. 7.2.1: rho 1 is close to Pocock's boundaries, rho 3 to O'Brien & Fleming's). Below 1 it spends
early, which a percentile pass needs: no pass can spend anything before (1 - q)^n <= alpha, so a late
spending function leaves the first looks where a pass is possible unusable (rho 1 passes 5th percentiles
at 128 chips of 200 at best, rho 0.25 at 64). The cost is on borderline truths: at a true fraction q / 2,
200 chips, alpha 0.05, P(pass) is 0.37 against 0.45 with rho 1."""



@dataclass(frozen=True)
class Boundaries:
    """An exact group-sequential binomial test of "fraction <= q" over a look schedule."""

    looks: tuple[int, ...]
    pass_at: tuple[int, ...]
    """Pass at look k if the count is <= pass_at[k] (-1: no count passes there)."""
    fail_at: tuple[int, ...]
    """Fail at look k if the count is >= fail_at[k] (looks[k] + 1: no count fails there)."""
    pass_spent: tuple[float, ...]
    """P(the count has crossed the pass boundary by look k | fraction = q): at most alpha t_k^rho."""
    fail_spent: tuple[float, ...]
    """P(the count has crossed the fail boundary by look k | fraction = q): at most alpha t_k^rho."""


def spending(t: float, alpha: float, rho: float = SPENDING_RHO) -> float:
    """Error spent by information time t = chips / --chips: alpha min(1, t^rho) (Kim & DeMets 1987)."""
    return alpha * min(1.0, t) ** rho


@lru_cache(maxsize=256)
def binomial_boundaries(looks: tuple[int, ...], q: float, alpha: float, rho: float = SPENDING_RHO) -> Boundaries:
    """Boundaries of the exact group-sequential test of "at most a fraction ``q`` of chips below" at the
    cumulative chip counts ``looks`` (Jennison & Turnbull 2000, ch. 12; spending ``spending``).

    Exact dynamic programming over the binomial increments between looks: ``dist`` is the distribution,
    at fraction q, of the count on the paths that have not yet crossed the boundary being built; at each
    look it is convolved with Binomial(new chips, q), and the boundary is the loosest count whose total
    crossing probability so far stays within the spending ``alpha (n_k / n_K)^rho``. Each side is built
    on its own (the other side does not stop the walk): non-binding, so its bound holds whatever stops a
    run (another criterion, --chips).

    Why a true fraction of exactly q is the worst case: draw chip i below with U_i < p for uniforms U_i;
    then every look's count is non-decreasing in p on every path, so "ever count <= pass_at" is a
    decreasing event and P_p(ever pass) <= P_q(ever pass) <= alpha for every p >= q (a wrong pass), and
    "ever count >= fail_at" is increasing: P_p(ever fail) <= P_q(ever fail) <= alpha for every p <= q (a
    wrong fail). Computed once per (schedule, q, alpha), then cached: K looks of n <= a few thousand
    chips take milliseconds."""
    if not (looks and all(a < b for a, b in zip((0, *looks), looks, strict=False))):
        raise ValueError(f"looks must be increasing positive chip counts, got {looks}")
    if not (0 <= q < 1 and 0 < alpha < 1):
        raise ValueError(f"need 0 <= q < 1 and 0 < alpha < 1, got q {q}, alpha {alpha}")
    out = {}
    for side in ("pass", "fail"):
        dist, prev, crossed, bounds, spent = np.ones(1), 0, 0.0, [], []
        for n in looks:
            dist = np.convolve(dist, stats.binom.pmf(np.arange(n - prev + 1), n - prev, q))
            prev, budget = n, spending(n / looks[-1], alpha, rho) - crossed
            if side == "pass":  # tail[c] = P(count <= c, not crossed before)
                tail = np.cumsum(dist)
                b = int(np.searchsorted(tail, budget, side="right")) - 1  # the largest c with tail[c] <= budget
                if b >= 0:
                    crossed += float(tail[b])
                    dist[: b + 1] = 0.0
            else:  # tail[c] = P(count >= c, not crossed before)
                tail = np.cumsum(dist[::-1])[::-1]
                ok = np.flatnonzero(tail <= budget)
                b = int(ok[0]) if len(ok) else n + 1
                if b <= n:
                    crossed += float(tail[b])
                    dist[b:] = 0.0
            bounds.append(b)
            spent.append(crossed)
        out[side] = (tuple(bounds), tuple(spent))
    return Boundaries(tuple(looks), out["pass"][0], out["fail"][0], out["pass"][1], out["fail"][1])


__all__ = ["SPENDING_RHO", "Boundaries", "binomial_boundaries", "spending"]
