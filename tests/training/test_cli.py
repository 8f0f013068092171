"""``nft-deploy train``: a quick run writes its files; every bad input is one line and exit 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import nft_deploy.data
from nft_deploy.cli import main


def _npz(path, n=48, side=28, **override):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.random((n, 1, side, side)).astype(np.float32), "y": rng.integers(0, 3, n)}
    arrays.update(override)
    np.savez(path, **arrays)
    return str(path)


def _run(args):
    return CliRunner().invoke(main, ["train", *args])


def test_quick_run_writes_checkpoint_and_log_and_prints_each_epoch(tmp_path):
    data, out = _npz(tmp_path / "d.npz"), tmp_path / "m.pt"
    r = _run(["--model", "lenet5", "--width", "0.25", "--data", data, "--method", "ovf", "--sigma", "0.2",
              "--epochs", "2", "--batch-size", "16", "--mc-chips", "2", "--quiet", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "Monte Carlo" in r.output and "epoch" not in r.output  # --quiet: no per-epoch lines
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["method"]["name"] == "ovf" and ckpt["profile"]["programming"]["sigma"] == 0.2
    assert ckpt["metrics"]["mc_chips"] == 2.0
    assert (tmp_path / "m.train.json").is_file()
    r = _run(["--width", "0.25", "--data", data, "--method", "plain", "--epochs", "2", "-o", str(out),
              "--log", str(tmp_path / "log.json")])
    assert r.exit_code == 0 and r.output.count("epoch ") == 2 and (tmp_path / "log.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["--method", "sgd"], "--method: unknown method 'sgd'; choose one of: plain, noise_injection, temperature"),
    (["--model", "alexnet"], "--model: unknown model 'alexnet'; choose one of: lenet5, vgg8, resnet18"),
    (["--data", "cifar10"], "--data: unknown data set 'cifar10'; choose one of: mnist-5k, fashion-mnist"),
    (["--profile", "nope"], "nope: unknown profile; built-in profiles:"),
    (["--ovf-offsets", "0.1,abc"], "--ovf-offsets: '0.1,abc' is not a comma-separated list of numbers"),
    (["--irs-pool", "2.5"], "--irs-pool: '2.5': give positive integers"),
    (["--epochs", "0"], "--epochs: must be a positive integer"),
    (["--sigma", "-1"], "--sigma: must be >= 0"),
    (["--method", "irs", "--irs-layers", "conv9"], "--irs-layers: no module 'conv9' in the model; available: conv1"),
])
def test_bad_input_exits_1_with_one_line(args, message, tmp_path):
    out = tmp_path / "m.pt"
    extra = ["--data", _npz(tmp_path / "d.npz")] if "--data" not in args else []
    r = _run([*args, *extra, "--epochs" if "--epochs" not in args else "--seed", "1", "-o", str(out)])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], r.output
    assert not out.exists()


@pytest.mark.parametrize("override, message", [
    ({"y": None}, "missing key 'y'"),
    ({"y": np.zeros(5, np.int64)}, "y: 5 labels for 48 samples in x"),
    ({"x": np.zeros((48, 2, 3, 4, 5))}, "x: shape (48, 2, 3, 4, 5) not allowed"),
])
def test_bad_npz_names_what_is_wrong(override, message, tmp_path):
    arrays = {k: v for k, v in override.items() if v is not None}
    path = tmp_path / "d.npz"
    if "y" in override and override["y"] is None:
        np.savez(path, x=np.zeros((4, 1, 28, 28), np.float32))
    else:
        _npz(path, **arrays)
    r = _run(["--data", str(path), "--epochs", "1", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and message in r.output, r.output


def test_missing_fashion_mnist_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(nft_deploy.data, "FASHION_MNIST_DIR", tmp_path / "absent")
    r = _run(["--data", "fashion-mnist", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 1 and "apt-get install -y dataset-fashion-mnist" in r.output
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_user_error(tmp_path):
    r = _run(["--device", "cuda", "--data", _npz(tmp_path / "d.npz"), "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 1 and "--device: 'cuda' requested but CUDA is not available" in r.output
