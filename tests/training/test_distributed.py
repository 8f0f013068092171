"""Training under torchrun: 2-process gloo DDP ends with identical weights on both ranks, averages
gradients like one process with twice the batch, draws different noise per rank and per step, writes
the checkpoint once; torchrun, CUDA and backend misconfigurations are one-line errors with exit 1."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nft_deploy.cli import main
from nft_deploy.errors import ConfigError
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import load_profile
from nft_deploy.training import TrainConfig, train
from nft_deploy.training.distributed import (
    has_unused_parameters,
    noise_seed,
    read_env,
    resolve_backend,
    shard,
)

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

# Runs on every rank: three short trainings inside a process group the worker created itself (train()
# must join it and leave it alive), with spies on the noise draws, the method and the checkpoint writer.
WORKER = '''
import hashlib, json, sys
import numpy as np, torch
import torch.distributed as dist
from torch import nn
import nft_deploy.training.trainer as trainer
from nft_deploy.data import Dataset
from nft_deploy.noise import NoiseModel
from nft_deploy.training import TrainConfig, train

out = sys.argv[1]
dist.init_process_group("gloo")
rank = dist.get_rank()
draws, methods, saves = [], [], []
perturb, make_method, save = NoiseModel.perturb, trainer.make_method, trainer.save_checkpoint

def spy_perturb(self, weight, generator=None, out_axis=0, read=True):
    w = perturb(self, weight, generator, out_axis, read)
    if weight.dim() == 4 and len(draws) < 4:
        draws.append((w - weight).detach().flatten()[:32].tolist())
    return w

def spy_make(*a, **k):
    methods.append(make_method(*a, **k))
    return methods[-1]

def spy_save(*a, **k):
    saves.append(str(k.get("model").__class__.__name__))
    return save(*a, **k)

NoiseModel.perturb, trainer.make_method, trainer.save_checkpoint = spy_perturb, spy_make, spy_save

def digest(sd):
    h = hashlib.sha256()
    for k, v in sorted(sd.items()):
        h.update(k.encode()); h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()

class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4 * 14 * 14, 3)
        self.spare = nn.Linear(2, 2)  # never called: DDP must be told to look for unused parameters
    def forward(self, x):
        return self.fc(torch.flatten(torch.max_pool2d(torch.relu(self.bn(self.conv(x))), 2), 1))

d = np.load(sys.argv[2])
data = Dataset("tiny", d["x"], d["y"], d["xt"], d["yt"], 3)
runs = {"irs": dict(method="irs", batch_size=8, output=f"{out}/irs.pt"),
        "plain": dict(method="plain", batch_size=8, output=f"{out}/plain.pt"),
        "ovf_bn": dict(method="ovf", batch_size=6, irs_layers=None)}
report = {}
for name, kw in runs.items():
    draws.clear(); methods.clear(); saves.clear()
    cfg = TrainConfig(model="lenet5", width=0.25, epochs=2, lr=3e-3, seed=3, progress=False, **kw)
    model = BNNet() if name == "ovf_bn" else None
    r = train(cfg, data=data, model=model)
    heads = methods[0].heads.state_dict() if name == "irs" else {}
    report[name] = {"weights": digest(r.model.state_dict()), "heads": digest(heads), "draws": list(draws),
                    "history": [[h.loss, h.clean_acc, h.noisy_acc] for h in r.history], "saves": len(saves),
                    "world": r.world_size, "rank": r.rank, "checkpoint": str(r.checkpoint)}
report["group_alive"] = dist.is_initialized()

from nft_deploy.errors import ConfigError
from nft_deploy.training.distributed import distributed

def refuse():
    raise ConfigError("out.pt: cannot write here")

with distributed() as d:
    try:
        d.on_main(refuse)
    except ConfigError as e:
        report["on_main_error"] = str(e)
    report["on_main_value"] = d.on_main(lambda: {"from_rank": d.rank})
json.dump(report, open(f"{out}/rank{rank}.json", "w"))
dist.barrier()
dist.destroy_process_group()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path, timeout: float = 150) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _data(path: Path, n: int = 48, n_test: int = 21) -> Path:
    rng = np.random.default_rng(0)
    y, yt = rng.integers(0, 3, n), rng.integers(0, 3, n_test)
    x = rng.random((n, 1, 28, 28)).astype(np.float32) * 0.3
    xt = rng.random((n_test, 1, 28, 28)).astype(np.float32) * 0.3
    for arr, lab in ((x, y), (xt, yt)):
        for i, c in enumerate(lab):
            arr[i, 0, 9 * c: 9 * c + 9, :] += 0.7
    np.savez(path, x=x, y=y, xt=xt, yt=yt)
    return path


def _digest(state_dict: dict) -> str:
    h = hashlib.sha256()
    for k, v in sorted(state_dict.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One torchrun launch of the worker: the per-rank reports and the run folder."""
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "worker.py").write_text(WORKER)
    data = _data(tmp / "d.npz")
    r = _torchrun([str(tmp / "worker.py"), str(tmp), str(data)], cwd=tmp)
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads((tmp / f"rank{k}.json").read_text()) for k in (0, 1)], tmp


@pytest.mark.parametrize("run", ["irs", "plain", "ovf_bn"])
def test_two_gloo_ranks_end_with_identical_weights_heads_and_metrics(ddp_run, run):
    (r0, r1), _ = ddp_run
    a, b = r0[run], r1[run]
    assert (a["rank"], b["rank"], a["world"], b["world"]) == (0, 1, 2, 2)
    assert a["weights"] == b["weights"]  # backbone parameters and batch-norm buffers
    assert a["heads"] == b["heads"]  # IRS heads are synchronised too
    assert a["history"] == b["history"]  # all-reduced loss, accuracies on the split test set
    assert len(a["history"]) == 2


def test_noise_differs_across_ranks_and_steps(ddp_run):
    (r0, r1), _ = ddp_run
    for run in ("irs", "ovf_bn"):
        d0, d1 = np.array(r0[run]["draws"]), np.array(r1[run]["draws"])
        assert d0.shape == d1.shape and len(d0) >= 2
        assert not np.allclose(d0[0], d1[0])  # same layer, same step, same weights: different rank noise
    # rank 0 keeps the plain seed; the same rank's draws move on from one forward to the next
    irs = np.array(r0["irs"]["draws"])
    assert not np.allclose(irs[0], irs[2])  # conv1 at step 1 vs step 2 (LeNet-5 has two conv layers)


def test_checkpoint_written_once_by_rank_0_and_loads_weights_only(ddp_run):
    (r0, r1), tmp = ddp_run
    assert (r0["irs"]["saves"], r1["irs"]["saves"]) == (1, 0)
    assert r0["irs"]["checkpoint"] == r1["irs"]["checkpoint"] == str(tmp / "irs.pt")
    ckpt = torch.load(tmp / "irs.pt", weights_only=True)
    assert not any(k.startswith("module.") or k.startswith("extra") for k in ckpt["state_dict"])
    assert _digest(ckpt["state_dict"]) == r0["irs"]["weights"]
    log = json.loads((tmp / "irs.train.json").read_text())
    assert log["distributed"] == {"world_size": 2, "backend": "gloo", "device": "cpu", "global_batch": 16}
    assert r0["group_alive"] and r1["group_alive"]  # the worker's own group survives train()


def test_rank_0_results_and_user_errors_reach_every_rank(ddp_run):
    (r0, r1), _ = ddp_run
    assert r0["on_main_value"] == r1["on_main_value"] == {"from_rank": 0}
    assert r0["on_main_error"] == r1["on_main_error"] == "out.pt: cannot write here"


def test_ddp_plain_matches_one_process_with_the_global_batch(ddp_run):
    """Without noise, 2 ranks x batch 8 on strided shards = 1 process x batch 16: the same samples per step,
    and DDP's gradient average equals the global-batch mean (48 samples: no padding)."""
    (r0, _), tmp = ddp_run
    d = np.load(tmp / "d.npz")
    from nft_deploy.data import Dataset

    data = Dataset("tiny", d["x"], d["y"], d["xt"], d["yt"], 3)
    cfg = TrainConfig(model="lenet5", width=0.25, epochs=2, lr=3e-3, seed=3, progress=False, method="plain",
                      batch_size=16)
    ref_run = train(cfg, data=data)
    ref, ref_hist = ref_run.model.state_dict(), ref_run.history
    got = torch.load(tmp / "plain.pt", weights_only=True)["state_dict"]
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5, msg=k)
    assert np.allclose([h.loss for h in ref_hist], [h[0] for h in r0["plain"]["history"]], rtol=1e-5)


def test_torchrun_cli_prints_once_and_writes_one_loadable_checkpoint(tmp_path):
    data = _data(tmp_path / "d.npz")
    script = Path(sys.executable).parent / "nft-deploy"
    if not script.is_file():
        script = tmp_path / "nft_deploy_cli.py"
        script.write_text("import sys\nfrom nft_deploy.cli import main\nsys.exit(main())\n")
    r = _torchrun([str(script), "train", "--width", "0.25", "--data", str(data), "--method", "ovf", "--epochs", "2",
                   "--batch-size", "8", "--sigma", "0.2", "--expect-world-size", "2", "--mc-chips", "2",
                   "-o", str(tmp_path / "m.pt")], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("epoch ") == 2 and r.stdout.count("wrote ") == 1, r.stdout  # rank 0 only
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert ckpt["method"]["name"] == "ovf" and ckpt["metrics"]["mc_chips"] == 2.0
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "m.pt", "m.train.json"] + (
        ["nft_deploy_cli.py"] if script.parent == tmp_path else [])


# ------------------------------------------------------------------ in-process units


def test_shards_are_equal_sized_disjoint_strides_covering_every_sample():
    order = np.random.default_rng(0).permutation(11)
    parts = [shard(order, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]  # 11 padded to 12 by wrapping around to order[0]
    padded = np.concatenate([order, order[:1]])
    for r, p in enumerate(parts):
        assert np.array_equal(p, padded[r::3])  # every 3rd entry of the shared order, from the rank on
    assert sorted(np.concatenate(parts).tolist()) == sorted(padded.tolist())
    assert shard(order, 0, 1) is order


def test_noise_seed_keeps_rank_0_and_separates_ranks_deterministically():
    seeds = [noise_seed(7, r) for r in range(8)]
    assert seeds[0] == 7 and len(set(seeds)) == 8 and seeds == [noise_seed(7, r) for r in range(8)]
    assert noise_seed(8, 1) != seeds[1]
    assert all(0 <= s < 2**63 for s in seeds)


def test_read_env_outside_torchrun_is_a_world_of_one():
    env = read_env({})
    assert (env.rank, env.world_size, env.local_rank) == (0, 1, 0)
    env = read_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                    "MASTER_ADDR": "h", "MASTER_PORT": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 4, 1, 2)


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK: not set, but WORLD_SIZE is (2)"),
    ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"}, "RANK: 2 is out of range; allowed from 0 to 1"),
    ({"WORLD_SIZE": "2", "RANK": "1"}, "LOCAL_RANK: not set, but WORLD_SIZE is (2)"),
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "1"},
     "LOCAL_RANK: 1 is out of range; allowed from 0 to 0"),
    ({"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0"}, "WORLD_SIZE: 'two' is not an integer"),
    ({"WORLD_SIZE": "0", "RANK": "0", "LOCAL_RANK": "0"}, "WORLD_SIZE: 0 is out of range; allowed >= 1"),
    ({"RANK": "1"}, "WORLD_SIZE: not set, but RANK is (1)"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_PORT": "1"}, "MASTER_ADDR: not set, but WORLD_SIZE is 2"),
])
def test_torchrun_env_mismatch_exits_1_with_one_line(env, message, tmp_path, monkeypatch):
    for k in TORCHRUN_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _assert_one_line_error(tmp_path, [], message)


@pytest.mark.parametrize("args, message, needs_no_cuda", [
    (["--expect-world-size", "2"], "--expect-world-size: 2, but this job has 1 process(es) (WORLD_SIZE)", False),
    (["--expect-world-size", "0"], "--expect-world-size: must be a positive integer", False),
    (["--dist-backend", "mpi"], "--dist-backend: 'mpi'; choose one of: gloo, nccl", False),
    (["--dist-backend", "nccl"], "--dist-backend: nccl needs", False),
    (["--device", "cuda"], "--device: 'cuda' requested but CUDA is not available; use --device cpu", True),
    (["--device", "cuda", "--dist-backend", "nccl"], "nccl needs CUDA", True),
])
def test_backend_device_and_world_size_errors_exit_1_with_one_line(args, message, needs_no_cuda, tmp_path,
                                                                   monkeypatch):
    if needs_no_cuda and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the no-CUDA errors cannot occur")
    for k in TORCHRUN_VARS:
        monkeypatch.delenv(k, raising=False)
    _assert_one_line_error(tmp_path, args, message)


def _assert_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "m.pt"
    r = CliRunner().invoke(main, ["train", "--data", str(_data(tmp_path / "d.npz")), "--width", "0.25",
                                  "--epochs", "1", *args, "-o", str(out)])
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], r.output
    assert not out.exists() and not out.with_name("m.train.json").exists()


def test_unused_parameters_are_detected_by_one_forward(tiny_net):
    x = torch.rand(2, 1, 8, 8)
    assert not has_unused_parameters(tiny_net, x)
    tiny_net.spare = torch.nn.Linear(2, 2)
    running = tiny_net.bn.running_mean.clone()
    assert has_unused_parameters(tiny_net, x)
    assert torch.equal(tiny_net.bn.running_mean, running)  # the probe leaves batch-norm statistics alone


def test_resolve_backend_picks_gloo_on_cpu_and_checks_explicit_choices():
    assert resolve_backend(None, "cpu") == "gloo"
    assert resolve_backend("gloo", "cpu") == "gloo"
    with pytest.raises(ConfigError, match="--dist-backend: nccl needs"):
        resolve_backend("nccl", "cpu")


# ------------------------------------------------------------------ CUDA path


def test_stuck_at_draw_uses_the_generator_device(monkeypatch):
    """The stuck-at sub-seed comes from ``torch.randint(..., generator=g, device=g.device)``: a CUDA
    generator would reject a CPU draw. Checked on CPU by watching the call."""
    nm = NoiseModel.for_layer(load_profile("rram_4bit"), "x")
    assert nm.has_stuck_at
    seen = []
    real = torch.randint

    def spy(*a, **k):
        seen.append(k.get("device"))
        return real(*a, **k)

    monkeypatch.setattr(torch, "randint", spy)
    g = torch.Generator(device="cpu").manual_seed(0)
    nm.perturb(torch.randn(4, 3), g)
    assert seen == [g.device]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_training_keeps_model_and_noise_on_the_gpu(tmp_path):
    d = np.load(_data(tmp_path / "d.npz"))
    from nft_deploy.data import Dataset

    data = Dataset("tiny", d["x"], d["y"], d["xt"], d["yt"], 3)
    r = train(TrainConfig(width=0.25, epochs=1, batch_size=8, method="ovf", profile="rram_4bit", device="cuda",
                          progress=False), data=data)
    assert all(p.device.type == "cuda" for p in r.model.parameters())
    assert 0.0 <= r.metrics["noisy_acc"] <= 1.0


LOSES_A_RANK = '''
import os, sys
import numpy as np, torch
from torch import nn
from nft_deploy.data import Dataset
from nft_deploy.errors import NftDeployError
from nft_deploy.training import TrainConfig, train

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.calls = nn.Linear(28 * 28, 3), 0
    def forward(self, x):
        self.calls += 1
        if os.environ["RANK"] == "1" and self.calls == 3:
            os._exit(0)  # rank 1 leaves in the middle of an epoch (exit 0: torchrun waits for rank 0)
        return self.fc(torch.flatten(x, 1))

d = np.load(sys.argv[1])
try:
    train(TrainConfig(model="lenet5", epochs=3, batch_size=8, progress=False, method="plain",
                      output=sys.argv[2]), data=Dataset("tiny", d["x"], d["y"], d["xt"], d["yt"], 3), model=Net())
except NftDeployError as e:
    print(f"Error: {e}", file=sys.stderr)
    sys.exit(1)
'''


@pytest.mark.slow
def test_a_rank_that_leaves_stops_the_job_with_one_line_from_rank_0(tmp_path):
    (tmp_path / "w.py").write_text(LOSES_A_RANK)
    data = _data(tmp_path / "d.npz")
    r = _torchrun(["--log-dir", str(tmp_path / "logs"), "--redirects", "3", str(tmp_path / "w.py"), str(data),
                   str(tmp_path / "m.pt")], cwd=tmp_path)
    assert r.returncode != 0
    rank0 = next((tmp_path / "logs").rglob("0/stderr.log")).read_text()
    lines = [ln for ln in rank0.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in rank0, rank0
    assert lines[0].startswith("Error: rank 0: another process of this 2-process job stopped")
    assert not (tmp_path / "m.pt").exists()
