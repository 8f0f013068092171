"""Several models on the same chips and data: side by side, deltas, paired CI of the accuracy difference.

Chips are shared by seed: chip i of every model draws from ``SeedSequence(seed, spawn_key=(i, crc32(layer)))``,
so models with the same layer names (pre- and post-NFT versions of one architecture) see the very same
device draws and per-chip accuracies pair up; the paired interval is then much tighter than the two
separate ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.metrics import paired_difference
from nft_deploy.evaluation.results import CompareResult, EvaluationResult, ModelDelta
from nft_deploy.evaluation.runner import (
    EvalConfig,
    make_config,
    resolve_data,
    run_on_same_chips,
    with_preprocessing,
)
from nft_deploy.evaluation.sequential import paired_width_rule


def deltas(results: Sequence[EvaluationResult]) -> list[ModelDelta]:
    """Every model after the first against the first (the baseline), chip by chip."""
    base = results[0]
    out = []
    for r in results[1:]:
        if [c.chip for c in r.per_chip] != [c.chip for c in base.per_chip]:
            raise EvaluationError(f"{r.model}: evaluated on other chips than {base.model}; use the same --chips/--seed")
        out.append(ModelDelta(
            model=r.model, baseline=base.model,
            accuracy=paired_difference([c.accuracy for c in r.per_chip], [c.accuracy for c in base.per_chip]),
            confidence=r.confidence - base.confidence, ekl=r.ekl - base.ekl, flip_rate=r.flip_rate - base.flip_rate))
    return out


def compare(models: Sequence, data, config: EvalConfig | None = None, *, profile=None, **overrides) -> CompareResult:
    """Evaluate ``models`` (first = baseline) on the same chips and data; see ``evaluate`` for arguments."""
    if len(models) < 2:
        raise EvaluationError(f"compare: give at least two models, got {len(models)}")
    config = make_config(config, overrides)
    deployed = [load_deployed(m, profile) for m in models]
    d = resolve_data(data, config, deployed[0])
    rule = None if config.ci_width is None else paired_width_rule(config.ci_width)
    results = [with_preprocessing(r, d) for r in run_on_same_chips(deployed, d.x, d.y, config, data_name=d.name,
                                                                   rule=rule)]
    return CompareResult(results=results, deltas=deltas(results))
