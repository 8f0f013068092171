"""The ORT Monte Carlo: determinism, known answers, strategies, sigma rescaling, read noise."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from nft_deploy.chips import draw_chip
from nft_deploy.evaluation.deployed import load_deployed
from nft_deploy.evaluation.results import to_json, write_json
from nft_deploy.evaluation.runner import chip_logits, evaluate
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import load_profile


def test_same_seed_gives_byte_identical_json_and_another_seed_differs(tiny_cnn, tmp_path):
    path, data = tiny_cnn
    a = write_json(evaluate(path, data, chips=6, seed=3, quiet=True), tmp_path / "a.json").read_bytes()
    b = write_json(evaluate(path, data, chips=6, seed=3, quiet=True), tmp_path / "b.json").read_bytes()
    c = write_json(evaluate(path, data, chips=6, seed=4, quiet=True), tmp_path / "c.json").read_bytes()
    assert a == b
    assert a != c


def test_ideal_profile_gives_zero_std_and_clean_accuracy(helpers):
    model = helpers.deploy(helpers.conv(), "ideal")
    r = evaluate(model, helpers.data(), chips=5, quiet=True)
    assert r.accuracy.std == 0.0
    assert r.accuracy.mean == r.clean.accuracy
    assert r.flip_rate == 0.0 and r.ekl == pytest.approx(0.0, abs=1e-9)


def test_linear_model_mean_accuracy_matches_the_closed_form(helpers):
    """Two classes, logits W x with W = [[1, -1], [-1, 1]] and Gaussian weight noise of std s per weight:
    the logit margin gets noise of std s * sqrt(2) * |x|, so P(correct | x) = Phi(|m(x)| / (s sqrt(2) |x|))
    and the expected accuracy over chips is the mean of that over x (chips fixed across x do not bias it)."""
    w = np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    x = x[np.abs(x[:, 0] - x[:, 1]) > 0.02]
    y = (x @ w.T).argmax(1)
    profile = load_profile("nft_reference")
    s = NoiseModel(profile).weight_std * 1.0  # max|W| = 1
    margin = np.abs(2 * (x[:, 0] - x[:, 1])).astype(np.float64)
    phi = np.array([0.5 * (1 + math.erf(z / math.sqrt(2))) for z in margin / (s * math.sqrt(2) * np.linalg.norm(x, axis=1))])
    r = evaluate(helpers.deploy(helpers.linear(w), profile), (x, y), chips=300, seed=0, quiet=True)
    assert r.clean.accuracy == 1.0
    assert r.accuracy.ci99.high - r.accuracy.ci99.low < 0.03  # the check has power
    assert r.accuracy.ci99.low <= phi.mean() <= r.accuracy.ci99.high
    assert r.accuracy.ci95.low <= phi.mean() <= r.accuracy.ci95.high


def test_chip_logits_match_an_independent_numpy_forward(helpers):
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    profile = load_profile("nft_reference")
    model = load_deployed(helpers.deploy(helpers.linear(w, b), profile))
    x = rng.normal(size=(20, 5)).astype(np.float32)
    for chip in (0, 7):
        draws = draw_chip(model.layers, {}, seed=11, chip=chip)
        noisy = NoiseModel(profile).apply_chip(w, draws["fc"])
        expected = x.astype(np.float64) @ noisy.T + b
        np.testing.assert_allclose(chip_logits(model, x, chip, seed=11), expected, atol=1e-4)


def test_fold_feed_and_two_workers_give_the_same_json(tiny_cnn):
    path, data = tiny_cnn
    fold = to_json(evaluate(path, data, chips=8, strategy="fold", workers=1, quiet=True))
    feed = to_json(evaluate(path, data, chips=8, strategy="feed", workers=1, quiet=True))
    workers = to_json(evaluate(path, data, chips=8, strategy="fold", workers=2, threads=1, quiet=True))
    assert fold == feed.replace('"strategy": "feed"', '"strategy": "fold"')
    assert fold == workers


def test_auto_strategy_folds_convolutions_and_feeds_dense_models(helpers):
    conv = evaluate(helpers.deploy(helpers.conv(), "nft_reference"), helpers.data(), chips=1, quiet=True)
    dense = evaluate(helpers.deploy(helpers.linear(np.eye(3, 36, dtype=np.float32)), "nft_reference"),
                     (helpers.data()[0].reshape(120, -1), helpers.data()[1]), chips=1, quiet=True)
    assert (conv.strategy, dense.strategy) == ("fold", "feed")


def test_sigma_rescales_like_a_reexport_at_that_sigma(helpers):
    x, y = helpers.data()
    profile = load_profile("nft_reference")
    at_03 = evaluate(helpers.deploy(helpers.conv(), profile), (x, y), chips=6, sigma=0.15, quiet=True)
    at_015 = evaluate(helpers.deploy(helpers.conv(), profile.with_sigma(0.15)), (x, y), chips=6, quiet=True)
    assert at_03.sigma == at_015.sigma == 0.15
    assert [c.accuracy for c in at_03.per_chip] == [c.accuracy for c in at_015.per_chip]
    assert at_03.ekl == pytest.approx(at_015.ekl, abs=1e-6)


def test_sigma_zero_is_the_clean_model(tiny_cnn):
    path, data = tiny_cnn
    r = evaluate(path, data, chips=3, sigma=0.0, quiet=True)
    assert r.accuracy.std == 0 and r.accuracy.mean == r.clean.accuracy


def test_read_noise_is_redrawn_per_inference_reproducibly_and_off_in_clean(helpers):
    x, y = helpers.data()
    noisy = load_deployed(helpers.deploy(helpers.conv(), "ideal", read_std=0.2))
    twice = np.concatenate([x, x])
    logits = chip_logits(noisy, twice, chip=0, batch_size=len(x))
    assert not np.allclose(logits[: len(x)], logits[len(x):])  # same input, new read noise
    np.testing.assert_array_equal(logits, chip_logits(noisy, twice, chip=0, batch_size=len(x)))
    assert not np.allclose(logits, chip_logits(noisy, twice, chip=1, batch_size=len(x)))
    quiet = evaluate(helpers.deploy(helpers.conv(), "ideal"), (x, y), chips=2, quiet=True)
    loud = evaluate(noisy, (x, y), chips=4, quiet=True)
    assert loud.clean == quiet.clean
    assert loud.strategy == "feed" and loud.accuracy.std > 0  # no chip inputs: auto feeds, read noise still drawn


def test_per_chip_results_come_in_chip_order_with_flat_sums(tiny_cnn):
    path, data = tiny_cnn
    r = evaluate(path, data, chips=5, batch_size=7, quiet=True)
    assert [c.chip for c in r.per_chip] == list(range(5))
    assert r.samples == len(data[1])
    assert sum(r.reliability.count) == 5 * len(data[1])
    assert r.predictive_entropy == pytest.approx(r.expected_entropy + r.ekl)


def test_hand_deployed_model_round_trips_through_a_file(tiny_cnn):
    path, _ = tiny_cnn
    model = load_deployed(path)
    assert model.chip_inputs == ["nft.chip/conv", "nft.chip/fc"]
    assert model.input_shape == (1, 6, 6) and model.num_classes == 3
    assert isinstance(onnx.load(path), onnx.ModelProto)


def test_data_the_graph_rejects_at_run_time_is_a_clear_error(helpers):
    from onnx import TensorProto, helper

    from nft_deploy.errors import EvaluationError

    proto = helpers.linear(np.ones((3, 4), np.float32))
    proto.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "D"]))  # symbolic
    model = helpers.deploy(proto, "nft_reference")
    with pytest.raises(EvaluationError, match=r"ONNX Runtime rejected the data \(samples of shape \(5,\)\)"):
        evaluate(model, (np.zeros((6, 5), np.float32), np.zeros(6, np.int64)), chips=1, quiet=True)


def test_memory_stays_flat_in_the_number_of_chips(tiny_cnn):
    """No per-chip logits are kept: the traced peak for 60 chips is that of 6 chips (numpy allocations)."""
    import tracemalloc

    path, (x, y) = tiny_cnn
    x, y = np.repeat(x, 10, axis=0), np.repeat(y, 10)  # 1,200 samples: per-chip logits would be visible

    def peak(chips):
        tracemalloc.start()
        evaluate(path, (x, y), chips=chips, workers=1, batch_size=200, quiet=True)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(2)  # warm-up: imports and caches
    small, large = peak(6), peak(60)
    assert large < small * 1.2 + 200_000, (small, large)  # 60 chips' logits alone would add 1.7 MB
