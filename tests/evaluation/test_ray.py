"""--backend ray: byte-identical results to the local backend, streamed per-chip progress, Ray lifecycle,
and one-line errors when Ray is missing or the address is unreachable."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import types

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from nft_deploy.converters.graph_pass import run_pass

from nft_deploy.cli import main
from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation import ray_backend
from nft_deploy.evaluation.compare import compare
from nft_deploy.evaluation.results import to_json
from nft_deploy.evaluation.runner import EvalConfig, evaluate
from nft_deploy.evaluation.sweep import sweep
from nft_deploy.profiles import load_profile


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module (the evaluator reuses a Ray it did not start)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def shard_log(monkeypatch):
    """Records the chip chunks each Ray run was split into (proves the chips really went through Ray)."""
    calls = []
    real = ray_backend.run_shards

    def spy(job, chunks, advance, **kw):
        calls.append(chunks)
        return real(job, chunks, advance, **kw)

    monkeypatch.setattr(ray_backend, "run_shards", spy)
    return calls


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_evaluate_is_byte_identical_to_local_for_fold_feed_and_read_noise(local_ray, helpers, shard_log):
    x, y = helpers.data()
    conv = helpers.deploy(helpers.conv(), "nft_reference")
    noisy_read = helpers.deploy(helpers.conv(seed=2), "nft_reference", read_std=0.05)
    for model, strategy in ((conv, "fold"), (conv, "feed"), (noisy_read, "fold")):
        local = to_json(evaluate(model, (x, y), chips=7, seed=5, strategy=strategy, workers=1, quiet=True))
        on_ray = to_json(evaluate(model, (x, y), chips=7, seed=5, strategy=strategy, workers=2, backend="ray",
                                  quiet=True))
        assert on_ray == local
    assert len(shard_log) == 3
    for chunks in shard_log:  # several tasks per worker, every chip exactly once
        assert len(chunks) == 7 and sorted(c for chunk in chunks for c in chunk) == list(range(7))


def test_ray_sweep_and_compare_are_byte_identical_to_local(local_ray, helpers, shard_log):
    data = helpers.data()
    models = [helpers.deploy(helpers.conv(seed=s), "nft_reference") for s in (0, 3)]
    local = sweep(models, data, [0.1, 0.3], chips=4, seed=1, workers=1, quiet=True)
    on_ray = sweep(models, data, [0.1, 0.3], chips=4, seed=1, workers=2, backend="ray", quiet=True)
    assert to_json(on_ray) == to_json(local)
    assert on_ray.results[0][0].accuracy.mean != on_ray.results[0][1].accuracy.mean  # the sigmas did differ
    assert len(shard_log) == 4
    cmp_local = compare(models, data, chips=4, seed=2, workers=1, quiet=True)
    cmp_ray = compare(models, data, chips=4, seed=2, backend="ray", quiet=True)
    assert to_json(cmp_ray) == to_json(cmp_local)


def test_ray_time_axis_is_byte_identical_to_local_with_one_and_two_workers(local_ray, helpers, shard_log):
    model = run_pass(helpers.conv(seed=3), load_profile("pcm_drift"))[0]  # drift read noise redrawn per time
    data = helpers.data()
    local = [to_json(evaluate(model, data, chips=6, seed=2, time="1s,1y", workers=w, quiet=True)) for w in (1, 2)]
    on_ray = to_json(evaluate(model, data, chips=6, seed=2, time="1s,1y", workers=2, backend="ray", quiet=True))
    assert on_ray == local[0] == local[1]
    chips = json.loads(on_ray)["per_chip"]
    assert all(len(c["accuracy_at"]) == 2 for c in chips) and any(len(set(c["accuracy_at"])) > 1 for c in chips)
    assert sorted(c for chunk in shard_log[0] for c in chunk) == list(range(6))  # the chips did run on Ray
    grids = [sweep([model], data, [0.02, 0.05], chips=3, time="1s,1y", workers=2, quiet=True, **kw)
             for kw in ({}, {"backend": "ray"})]
    assert to_json(grids[1]) == to_json(grids[0]) and len(shard_log) == 3  # a sweep's time axis too


def test_ray_streams_one_progress_step_per_chip(local_ray, helpers, monkeypatch):
    from nft_deploy.evaluation import runner

    steps = []
    real = ray_backend.run_shards
    monkeypatch.setattr(ray_backend, "run_shards",
                        lambda job, chunks, advance, **kw: real(job, chunks, lambda n: steps.append(n), **kw))
    r = runner.evaluate(helpers.deploy(helpers.conv(), "nft_reference"), helpers.data(), chips=5, workers=2,
                        backend="ray", quiet=True)
    assert steps == [1] * 5 and [c.chip for c in r.per_chip] == list(range(5))


class FakeRay(types.ModuleType):
    """Just the calls ray_session makes, recorded."""

    def __init__(self, initialized: bool):
        super().__init__("ray")
        self.initialized, self.calls = initialized, []

    def is_initialized(self):
        return self.initialized

    def init(self, **kw):
        self.calls.append(("init", kw))
        self.initialized = True

    def shutdown(self):
        self.calls.append(("shutdown", {}))
        self.initialized = False

    def cluster_resources(self):
        return {"CPU": 3.0}


def test_ray_session_starts_a_local_ray_with_workers_cpus_and_shuts_down_only_what_it_started(monkeypatch):
    fresh = FakeRay(initialized=False)
    monkeypatch.setitem(sys.modules, "ray", fresh)
    with ray_backend.ray_session(None, num_cpus=2) as cpus:
        assert cpus == 3 and fresh.initialized
    assert [c[0] for c in fresh.calls] == ["init", "shutdown"]
    assert fresh.calls[0][1]["num_cpus"] == 2 and fresh.calls[0][1]["include_dashboard"] is False
    joined = FakeRay(initialized=True)
    monkeypatch.setitem(sys.modules, "ray", joined)
    with ray_backend.ray_session(None, num_cpus=2):
        pass
    assert joined.calls == [] and joined.initialized


def test_ray_session_joins_a_reachable_address_and_shuts_down_on_error(monkeypatch):
    fake = FakeRay(initialized=False)
    monkeypatch.setitem(sys.modules, "ray", fake)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(KeyError), ray_backend.ray_session(address, num_cpus=2):
            raise KeyError("a failure inside the block")
    assert fake.calls[0] == ("init", {"address": address, "log_to_driver": False, "logging_level": 30})
    assert fake.calls[1][0] == "shutdown"


def test_ray_backend_without_ray_installed_says_how_to_install_it(monkeypatch, tmp_path, helpers):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    x, y = helpers.data()
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x, y_test=y)
    onnx.save(helpers.deploy(helpers.conv(), "nft_reference"), tmp_path / "m.onnx")
    m, d = str(tmp_path / "m.onnx"), str(tmp_path / "d.npz")
    for args in (["evaluate", m], ["compare", m, m], ["sweep", m, "--sigmas", "0.1,0.2"],
                 ["check", m, "--min-accuracy", "0.1"]):
        r = CliRunner().invoke(main, [*args, "--data", d, "--chips", "2", "--backend", "ray", "--quiet"])
        assert r.exit_code == 1, r.output
        assert r.output.strip().splitlines() == [
            "Error: --backend ray: Ray is not installed; install it with pip install 'nft-deploy[ray]' "
            "(or pip install 'ray>=2.9')"]


def test_unreachable_address_fails_fast_with_one_line(tmp_path, tiny_cnn):
    pytest.importorskip("ray")
    path, (x, y) = tiny_cnn
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x, y_test=y)
    address = f"127.0.0.1:{closed_port()}"
    start = time.perf_counter()
    r = CliRunner().invoke(main, ["evaluate", str(path), "--data", str(tmp_path / "d.npz"), "--chips", "2",
                                  "--backend", "ray", "--address", address, "--json", str(tmp_path / "r.json")])
    assert time.perf_counter() - start < ray_backend.CONNECT_TIMEOUT_S + 5
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: --address {address}: no Ray cluster reachable")
    assert "ray start --head" in lines[0] and "Traceback" not in r.output
    assert not (tmp_path / "r.json").exists()


def test_bad_backend_address_combinations_name_the_flag():
    with pytest.raises(EvaluationError, match="--backend: must be one of local, ray; got 'dask'"):
        EvalConfig(backend="dask")
    with pytest.raises(EvaluationError, match="--address 1.2.3.4:6379: only used with --backend ray"):
        EvalConfig(address="1.2.3.4:6379")
    with pytest.raises(EvaluationError, match="--address host:port: the port is not a number"):
        ray_backend.check_reachable("host:port")


def test_ray_stops_a_sequential_run_at_the_same_chip_with_the_same_json(local_ray, helpers, shard_log):
    data = helpers.data()
    model = helpers.deploy(helpers.conv(), "nft_reference")
    local = evaluate(model, data, chips=32, seed=3, ci_width=0.3, first_look=4, workers=1, quiet=True)
    on_ray = evaluate(model, data, chips=32, seed=3, ci_width=0.3, first_look=4, workers=2, backend="ray",
                      quiet=True)
    assert local.chips < 32 and to_json(on_ray) == to_json(local)
    looks = [sorted(c for chunk in chunks for c in chunk) for chunks in shard_log]
    assert looks[0] == [0, 1, 2, 3] and sum(map(len, looks)) == local.chips  # one Ray run per look, in order


def _chip_task_pids() -> list[int]:
    """Ray worker processes running a chip task now (Ray titles them ``ray::_chip_task``)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::_chip_task"):
                    pids.append(int(entry))
        except (OSError, ValueError):
            continue
    return pids


@pytest.fixture
def killer(monkeypatch):
    """At the first chip done, kills (SIGKILL) every Ray worker running a chip task: with several chips per
    task, at least the one that sent that chip is in the middle of its chunk."""
    state = {"killed": []}
    real = ray_backend.run_shards

    def run_shards(job, chunks, advance, **kw):
        def step(n):
            if not state["killed"]:
                for pid in _chip_task_pids():
                    os.kill(pid, signal.SIGKILL)
                    state["killed"].append(pid)
            advance(n)
        return real(job, chunks, step, **kw)

    monkeypatch.setattr(ray_backend, "run_shards", run_shards)
    return state


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray workers through /proc")
def test_a_ray_worker_killed_mid_run_is_retried_and_the_json_is_byte_identical(local_ray, helpers, killer):
    model = helpers.deploy(helpers.conv(), "nft_reference", read_std=0.05)
    data = helpers.data(n=3000)  # long enough per chip that the kill lands inside a running task
    on_ray = evaluate(model, data, chips=8, seed=4, backend="ray", workers=1, quiet=True)  # 4 tasks of 2 chips
    assert killer["killed"], "no Ray worker was running a chip task to kill"
    assert to_json(on_ray) == to_json(evaluate(model, data, chips=8, seed=4, workers=1, quiet=True))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray workers through /proc")
def test_a_ray_task_whose_worker_keeps_dying_is_one_line_naming_its_chips(local_ray, helpers, killer, monkeypatch):
    monkeypatch.setattr(ray_backend, "MAX_RETRIES", 0)
    model = helpers.deploy(helpers.conv(), "nft_reference")
    with pytest.raises(EvaluationError, match=r"--backend ray: the task running chips \d+\.\.\d+ failed after 0 "
                                              r"retries .*--backend local"):
        evaluate(model, helpers.data(n=3000), chips=8, backend="ray", workers=1, quiet=True)
    assert killer["killed"]


def test_ray_is_a_registered_backend_imported_only_when_a_run_uses_it():
    """Choosing --backend ray, and loading its module, do not import Ray; no backend module imports the
    runner (no import cycle), and the registry imports a built-in backend only when it is asked for."""
    import ast
    import subprocess

    from nft_deploy.evaluation import backends, local_backend

    code = ("import sys\n"
            "from nft_deploy.evaluation.backends import backend, backend_names\n"
            "from nft_deploy.evaluation.config import EvalConfig\n"
            "EvalConfig(backend='ray')\n"
            "assert 'nft_deploy.evaluation.ray_backend' not in sys.modules\n"
            "EvalConfig(backend='ray', address='auto')\n"
            "import nft_deploy.evaluation.ray_backend as rb\n"
            "assert backend('ray') is backend('ray') and isinstance(backend('ray'), rb.RayBackend)\n"
            "assert backend_names()[:2] == ['local', 'ray'] and 'ray' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for module in (backends, local_backend, ray_backend):
        with open(module.__file__) as f:
            imported = {n.module for n in ast.walk(ast.parse(f.read())) if isinstance(n, ast.ImportFrom)}
        assert "nft_deploy.evaluation.runner" not in imported, module.__name__
