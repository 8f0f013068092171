"""Recipe: a new evaluation backend, registered from outside the package through the public registration
point, gives byte-identical JSON to ``--backend local`` (results do not depend on where or in what order
chips run)."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation.backends import (
    Backend,
    backend,
    backend_names,
    register_backend,
    unregister_backend,
)
from nft_deploy.evaluation.config import EvalConfig
from nft_deploy.evaluation.results import to_json
from nft_deploy.evaluation.runner import evaluate
from nft_deploy.evaluation.shards import run_shard
from nft_deploy.export import insert_device_nodes


class ReversedInProcess(Backend):
    """Runs every chip in the calling process, one shard per chip, last chip first."""

    def __init__(self):
        self.ran: list[int] = []

    @contextmanager
    def session(self, config):
        yield 1

    def run(self, job, chips, workers, advance, on_shard):
        shards = []
        for chip in reversed(chips):
            shards.append(run_shard(job, [chip]))
            self.ran.append(chip)
            advance(1)
            on_shard(shards[-1])
        return shards


@pytest.fixture
def toy():
    """``--backend toy`` for the test, unregistered after it."""
    register_backend("toy")(ReversedInProcess)
    try:
        yield backend("toy")
    finally:
        unregister_backend("toy")


def tiny_model_and_data():
    """A deployed linear classifier (Gemm 12 -> 3, nft_reference) and 40 samples for it."""
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 12)).astype(np.float32), np.zeros(3, np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["logits"], transB=1)], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w, "fc.weight"), numpy_helper.from_array(b, "fc.bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(40, 12)).astype(np.float32)
    return insert_device_nodes(model, "nft_reference")[0], (x, (x @ w.T).argmax(1))


def test_a_backend_registered_outside_the_package_gives_the_local_json(toy, tmp_path):
    model, data = tiny_model_and_data()
    assert "toy" in backend_names() and EvalConfig(backend="toy").backend == "toy"
    local = to_json(evaluate(model, data, chips=6, seed=3, workers=2, quiet=True))
    on_toy = to_json(evaluate(model, data, chips=6, seed=3, backend="toy", quiet=True))
    assert on_toy == local
    assert toy.ran == [5, 4, 3, 2, 1, 0]  # the chips really ran there, in reverse
    toy.ran.clear()  # --resume goes through the backend's on_shard: a rerun runs nothing, same bytes
    first = to_json(evaluate(model, data, chips=6, seed=3, backend="toy", quiet=True, resume=str(tmp_path / "k")))
    again = to_json(evaluate(model, data, chips=6, seed=3, backend="toy", quiet=True, resume=str(tmp_path / "k")))
    assert first == again == local and toy.ran == [5, 4, 3, 2, 1, 0]


def test_registration_is_checked_and_undone(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_backend("toy")(type("Other", (Backend,), {}))
    with pytest.raises(ValueError, match="already registered"):
        register_backend("local")(type("Other", (Backend,), {}))
    with pytest.raises(TypeError, match="not a Backend subclass"):
        register_backend("bad")(object)
    unregister_backend("toy")
    assert "toy" not in backend_names()
    with pytest.raises(EvaluationError, match="--backend: must be one of local, ray; got 'toy'"):
        EvalConfig(backend="toy")
    with pytest.raises(EvaluationError, match="--address h:1: only used with --backend ray"):
        EvalConfig(address="h:1")
