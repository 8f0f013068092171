"""Models x programming sigmas: the accuracy-vs-sigma grid, one Monte Carlo per cell, same chips.

Each sigma rescales the chip normals of the exported model (``--sigma``), so one export covers the
whole curve. Runs on either backend (``EvalConfig.backend``); a Ray started for the sweep serves every cell.
"""

from __future__ import annotations

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
    run_monte_carlo,
    with_preprocessing,
)


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
    """Every model at every programming sigma (profile unit) on the same chips and data."""
    sigmas = parse_sweep(sigmas) if isinstance(sigmas, str) else [float(s) for s in sigmas]
    if not models:
        raise EvaluationError("sweep: give at least one model")
    config = make_config(config, overrides)
    if config.ci_width is not None:
        raise EvaluationError("--ci-width: applies to evaluate and compare; a sweep runs every cell on the same "
                              "--chips chips")
    deployed = [load_deployed(m, profile) for m in models]
    d = resolve_data(data, config, deployed[0])
    with backend_session(config):  # one Ray (when --backend ray) for the whole grid
        grid = [[with_preprocessing(run_monte_carlo(m, d.x, d.y, _with_sigma(config, s), data_name=d.name), d)
                 for s in sigmas] for m in deployed]
    return SweepResult(models=[row[0].model for row in grid], sigmas=list(sigmas), results=grid)


def _with_sigma(config: EvalConfig, sigma: float) -> EvalConfig:
    import dataclasses

    return dataclasses.replace(config, sigma=sigma)
