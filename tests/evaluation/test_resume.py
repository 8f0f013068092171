"""evaluate --resume: an interrupted Monte Carlo continues from the chips already done, with the same bytes."""

from __future__ import annotations

import pytest

from nft_deploy.errors import EvaluationError
from nft_deploy.evaluation import local_backend
from nft_deploy.evaluation.results import to_json
from nft_deploy.evaluation.runner import evaluate


@pytest.fixture
def interrupt_after(monkeypatch):
    """Makes the local backend raise KeyboardInterrupt when it starts its ``n``-th shard; records every
    shard's chips (what really ran)."""
    state = {"n": None, "ran": []}
    real = local_backend.run_shard

    def run_shard(job, chips, advance=None):
        if state["n"] is not None and len(state["ran"]) >= state["n"]:
            raise KeyboardInterrupt
        state["ran"].append(list(chips))
        return real(job, chips, advance)

    monkeypatch.setattr(local_backend, "run_shard", run_shard)
    return state


def test_an_interrupted_run_resumes_from_its_finished_shards_with_the_same_bytes(tiny_cnn, tmp_path, interrupt_after):
    path, data = tiny_cnn
    whole = to_json(evaluate(path, data, chips=12, seed=2, workers=1, quiet=True))
    interrupt_after.update(n=2, ran=[])
    with pytest.raises(KeyboardInterrupt):
        evaluate(path, data, chips=12, seed=2, workers=1, quiet=True, resume=str(tmp_path / "keep"))
    first = [c for shard in interrupt_after["ran"] for c in shard]
    interrupt_after.update(n=None, ran=[])
    resumed = evaluate(path, data, chips=12, seed=2, workers=1, quiet=True, resume=str(tmp_path / "keep"))
    assert to_json(resumed) == whole
    again = sorted(c for shard in interrupt_after["ran"] for c in shard)
    assert again == sorted(set(range(12)) - set(first)) and first  # only the missing chips ran again


def test_a_sequential_run_resumes_to_the_same_stop_point(tiny_cnn, tmp_path, interrupt_after):
    path, data = tiny_cnn
    kw = dict(chips=32, seed=3, ci_width=0.3, first_look=4, workers=1, quiet=True)
    whole = evaluate(path, data, **kw)
    interrupt_after.update(n=3, ran=[])
    with pytest.raises(KeyboardInterrupt):
        evaluate(path, data, resume=str(tmp_path), **kw)
    interrupt_after["n"] = None
    resumed = evaluate(path, data, resume=str(tmp_path), **kw)
    assert resumed.chips == whole.chips < 32 and to_json(resumed) == to_json(whole)


def test_other_settings_in_the_same_folder_never_mix(tiny_cnn, tmp_path):
    path, data = tiny_cnn
    evaluate(path, data, chips=6, seed=0, workers=1, quiet=True, resume=str(tmp_path))
    other = evaluate(path, data, chips=6, seed=1, workers=1, quiet=True, resume=str(tmp_path))
    assert to_json(other) == to_json(evaluate(path, data, chips=6, seed=1, workers=1, quiet=True))
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2  # one run folder per seed


def test_a_damaged_shard_is_one_line_naming_it(tiny_cnn, tmp_path):
    path, data = tiny_cnn
    evaluate(path, data, chips=4, workers=1, quiet=True, resume=str(tmp_path))
    shard = next(tmp_path.glob("*/shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(EvaluationError, match=rf"--resume: {shard} is not a shard .* delete it"):
        evaluate(path, data, chips=4, workers=1, quiet=True, resume=str(tmp_path))


def test_resume_with_the_torch_engine_is_one_line():
    from nft_deploy.evaluation.runner import EvalConfig

    with pytest.raises(EvaluationError, match="--resume: applies to --engine onnxruntime"):
        EvalConfig(resume="x", engine="torch")


def test_the_cli_keeps_shards_in_the_resume_folder_and_reuses_them(tiny_cnn, tmp_path):
    import numpy as np
    from click.testing import CliRunner

    from nft_deploy.cli import main

    path, (x, y) = tiny_cnn
    np.savez(tmp_path / "d.npz", x=x, y=y)
    args = ["evaluate", str(path), "--data", str(tmp_path / "d.npz"), "--chips", "4", "--workers", "1", "--quiet",
            "--resume", str(tmp_path / "keep")]
    first = CliRunner().invoke(main, [*args, "--json", str(tmp_path / "a.json")])
    assert first.exit_code == 0, first.output
    assert list((tmp_path / "keep").glob("*/shard-*.npz"))
    second = CliRunner().invoke(main, [*args, "--json", str(tmp_path / "b.json")])
    assert second.exit_code == 0 and (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
