"""compare: same chips for every model, deltas against the first, paired interval of the accuracy difference."""

from __future__ import annotations

import numpy as np
import pytest

from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation.compare import compare
from nft_deploy.evaluation.metrics import paired_difference
from nft_deploy.evaluation.runner import evaluate
from nft_deploy.evaluation.sweep import parse_sweep, sweep


def test_compare_pairs_chips_and_matches_separate_runs(helpers):
    a, b = helpers.deploy(helpers.conv(0), "nft_reference"), helpers.deploy(helpers.conv(0), "rram_state_dependent")
    data = helpers.data()
    c = compare([a, b], data, chips=8, quiet=True)
    alone = evaluate(helpers.deploy(helpers.conv(0), "rram_state_dependent"), data, chips=8, quiet=True)
    assert [x.accuracy for x in c.results[1].per_chip] == [x.accuracy for x in alone.per_chip]
    d = c.deltas[0]
    expected = paired_difference([x.accuracy for x in c.results[1].per_chip], [x.accuracy for x in c.results[0].per_chip])
    assert d.accuracy == expected
    assert d.confidence == pytest.approx(c.results[1].confidence - c.results[0].confidence)


def test_paired_interval_is_tighter_than_the_unpaired_one_for_similar_models(helpers):
    """The same weights at sigma 0.3 and 0.31: the same chips move both models alike, so pairing removes
    most of the chip-to-chip variance."""
    from nft_deploy.profiles import load_profile

    p = load_profile("nft_reference")
    a, b = helpers.deploy(helpers.conv(0), p), helpers.deploy(helpers.conv(0), p.with_sigma(0.31))
    c = compare([a, b], helpers.data(), chips=20, quiet=True)
    paired = c.deltas[0].accuracy.ci95.high - c.deltas[0].accuracy.ci95.low
    unpaired = 2 * 2.09 * np.hypot(*(r.accuracy.std for r in c.results)) / np.sqrt(20)
    assert paired < unpaired / 3


def test_compare_needs_two_models(helpers):
    with pytest.raises(EvaluationError, match="at least two models"):
        compare([helpers.deploy(helpers.conv(), "nft_reference")], helpers.data(), chips=2)


def test_parse_sweep_includes_the_stop_and_rejects_garbage():
    assert parse_sweep("0:0.4:0.1") == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert parse_sweep("0.05,0.2") == [0.05, 0.2]
    for bad in ("0:1", "1:0:0.1", "a,b", "0:1:0", "-0.1,0.2"):
        with pytest.raises(EvaluationError, match="--sweep"):
            parse_sweep(bad)


def test_sweep_accuracy_spread_grows_with_sigma(helpers):
    s = sweep([helpers.deploy(helpers.conv(), "nft_reference")], helpers.data(), [0.0, 0.4], chips=6, quiet=True)
    low, high = s.results[0]
    assert low.accuracy.std == 0 and high.accuracy.std > 0 and high.ekl > low.ekl
