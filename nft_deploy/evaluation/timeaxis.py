"""The time axis of a drifting model's Monte Carlo (``--time``): which models may be read at a time, and the
per-time summary of chips that were each programmed once and read at every time (paired curves)."""

from __future__ import annotations

from collections.abc import Sequence

from nft_deploy.device_plan import DevicePlan
from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation import metrics as M
from nft_deploy.evaluation.config import EvalConfig
from nft_deploy.evaluation.results import ChipMetrics, CleanMetrics, TimePoint


def check_times(name: str, plan: DevicePlan, config: EvalConfig) -> None:
    """EvaluationError when ``--time`` is given for a model whose plan does not drift."""
    if config.time and not plan.drifts:
        raise EvaluationError(f"{name}: --time {','.join(config.time)}: profile {plan.profile.name!r} has no drift "
                              "section, so its chips do not change with time; deploy it with a drifting profile "
                              "(e.g. --profile pcm_drift) or leave --time out")


def time_axis(config: EvalConfig, clean: CleanMetrics, chips: Sequence[ChipMetrics]) -> list[TimePoint]:
    """Accuracy statistics over ``chips`` at each ``--time`` ([] without it)."""
    points = []
    for i, (label, seconds) in enumerate(zip(config.time or (), config.seconds, strict=True)):
        acc = M.accuracy_stats([c.accuracy_at[i] for c in chips])
        points.append(TimePoint(seconds=seconds, label=str(label), accuracy=acc,
                                accuracy_drop=clean.accuracy - acc.mean))
    return points


__all__ = ["check_times", "time_axis"]
