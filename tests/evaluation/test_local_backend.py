"""Worker processes sized to the memory there is, and a worker the system kills: one line, not a traceback."""

from __future__ import annotations

import os
import signal

import pytest
from click.testing import CliRunner

from nft_deploy.cli import main
from nft_deploy.errors import EvaluationError, Note
from nft_deploy.evaluation import local_backend
from nft_deploy.evaluation.results import to_json
from nft_deploy.evaluation.runner import evaluate


def _per_worker(path, data) -> int:
    import onnx

    return local_backend.worker_bytes(onnx.load(str(path)).ByteSize(), data[0].astype("float32").nbytes, "fold")


def test_fewer_workers_when_two_do_not_fit_with_a_note_and_the_same_json(tiny_cnn, monkeypatch):
    path, data = tiny_cnn
    one = to_json(evaluate(path, data, chips=6, strategy="fold", workers=1, quiet=True))
    monkeypatch.setattr(local_backend, "available_bytes", lambda: int(1.5 * _per_worker(path, data)))
    with pytest.warns(Note, match="--workers: asked for 2, but each needs about .* running 1"):
        two = to_json(evaluate(path, data, chips=6, strategy="fold", workers=2, quiet=True))
    assert two == one


def test_a_machine_too_small_for_one_worker_is_one_line_naming_workers_and_strategy(tiny_cnn, tmp_path, monkeypatch):
    path, data = tiny_cnn
    monkeypatch.setattr(local_backend, "available_bytes", lambda: _per_worker(path, data) // 3)
    with pytest.raises(EvaluationError, match=r"--workers: one worker needs about .* --strategy feed"):
        evaluate(path, data, chips=2, strategy="fold", quiet=True)
    import numpy as np

    np.savez(tmp_path / "d.npz", x=data[0], y=data[1])
    r = CliRunner().invoke(main, ["evaluate", str(path), "--data", str(tmp_path / "d.npz"), "--chips", "2",
                                  "--strategy", "fold"])
    assert r.exit_code == 1 and r.output.startswith("Error: --workers: one worker needs") and "Traceback" not in r.output


def test_the_fit_reduces_only_what_it_must():
    assert local_backend.fit_workers(4, 100, None, "fold", False).workers == 4  # unknown: trust the user
    assert local_backend.fit_workers(4, 100, 1000, "fold", False) == local_backend.WorkerPlan(4)
    plan = local_backend.fit_workers(4, 100, 350, "feed", False)
    assert plan.workers == 3 and "would use 4" in plan.note
    with pytest.raises(EvaluationError, match="free memory, or evaluate fewer"):  # feed: no cheaper strategy
        local_backend.fit_workers(1, 100, 50, "feed", True)


def _killed(name, chips):
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_is_one_line_naming_its_chips_and_how_to_rerun(tiny_cnn, monkeypatch):
    path, data = tiny_cnn
    monkeypatch.setattr(local_backend, "_worker_shard", _killed)  # workers fork after this: they inherit it
    with pytest.raises(EvaluationError, match=r"a worker process died while running chips \d+\.\.\d+ .* --workers"):
        evaluate(path, data, chips=4, strategy="fold", workers=2, threads=1, quiet=True)


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork")
def test_workers_inherit_the_job_through_fork_and_tasks_carry_only_chips(tiny_cnn, monkeypatch):
    """The job (model weights, data) is never pickled: not per worker, not per task. The worker's copy lives
    on its process's local backend instance (no module-level job), never set in the parent."""
    from nft_deploy.evaluation import shards
    from nft_deploy.evaluation.backends import backend

    path, data = tiny_cnn
    one = to_json(evaluate(path, data, chips=6, strategy="fold", workers=1, quiet=True))

    def refuse(self, protocol):
        raise AssertionError("the job was pickled")

    monkeypatch.setattr(shards.Job, "__reduce_ex__", refuse)
    two = to_json(evaluate(path, data, chips=6, strategy="fold", workers=2, threads=1, quiet=True))
    assert two == one
    assert backend("local").worker_job is None and not hasattr(local_backend, "_WORKER_JOB")
