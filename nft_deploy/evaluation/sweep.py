"""Models x programming sigmas: the accuracy-vs-sigma grid, one Monte Carlo per cell, same chips.

Each sigma rescales the chip normals of the exported model (``--sigma``), so one export covers the
whole curve. Runs on either backend (``EvalConfig.backend``); a Ray started for the sweep serves every cell.
With ``--time`` (a drifting profile) every cell reads each chip at every time, so a sweep is a grid of
sigma x time on paired chips: chip i has the same draws in every cell, scaled by the cell's sigma.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.results import SweepResult
from nft_deploy.evaluation.runner import (
    EvalConfig,
    backend_session,
    make_config,
    resolve_data,
    resolve_sigma,
    run_monte_carlo,
    with_preprocessing,
)
from nft_deploy.evaluation.timeaxis import check_times


def parse_sweep(spec: str) -> list[float]:
    """``start:stop:step`` (stop included) or a comma list ``0.1,0.2,0.3`` -> sigmas."""
    try:
        if ":" in spec:
            start, stop, step = (float(v) for v in spec.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            values = [round(start + i * step, 10) for i in range(n)]
        else:
            values = [float(v) for v in spec.split(",")]
    except ValueError:
        raise EvaluationError(f"--sweep: {spec!r} is not START:STOP:STEP (STEP > 0, STOP >= START) or a "
                              "comma-separated list of sigmas, e.g. 0:0.4:0.05") from None
    if not values or any(not v >= 0 for v in values):
        raise EvaluationError(f"--sweep: sigmas must be >= 0, got {spec!r}")
    return values


def sweep(models: Sequence, data, sigmas: Sequence[float] | str, config: EvalConfig | None = None, *,
          profile=None, **overrides) -> SweepResult:
    """Every model at every programming sigma (profile unit) on the same chips and data; with ``time``, each
    cell is read at every time (``SweepResult.times``; the cells' top-level numbers are at the last)."""
    sigmas = parse_sweep(sigmas) if isinstance(sigmas, str) else [float(s) for s in sigmas]
    if not models:
        raise EvaluationError("sweep: give at least one model")
    config = make_config(config, overrides)
    if config.ci_width is not None:
        raise EvaluationError("--ci-width: applies to evaluate and compare; a sweep runs every cell on the same "
                              "--chips chips")
    deployed = [load_deployed(m, profile) for m in models]
    for m in deployed:  # every model's user errors before the first cell runs
        resolve_sigma(m, sigmas[0])
        check_times(m.name, m.plan, config)
    d = resolve_data(data, config, deployed[0])
    with backend_session(config):  # one Ray (when --backend ray) for the whole grid
        grid = [[with_preprocessing(run_monte_carlo(m, d.x, d.y, _with_sigma(config, s), data_name=d.name), d)
                 for s in sigmas] for m in deployed]
    return SweepResult(models=[row[0].model for row in grid], sigmas=list(sigmas), results=grid,
                       times=[str(t) for t in config.time or ()])


def _with_sigma(config: EvalConfig, sigma: float) -> EvalConfig:
    return dataclasses.replace(config, sigma=sigma)
