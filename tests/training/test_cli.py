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


# The flags `nft-deploy train --help` listed before they were generated from the option dataclasses:
# (declarations, parameter name, click type, default, default shown, is a flag).
FLAGS_BEFORE = [
    (("--model",), "model", "text", "lenet5", True, False),
    (("--width",), "width", "float", None, False, False),
    (("--data",), "data", "text", "mnist-5k", True, False),
    (("--method",), "method", "text", "ovf", True, False),
    (("--profile",), "profile", "text", "nft_reference", True, False),
    (("--sigma",), "sigma", "float", None, False, False),
    (("--beta",), "beta", "float", None, False, False),
    (("--draws",), "draws", "integer", 1, True, False),
    (("--ovf-n",), "ovf_n", "integer", 3, True, False),
    (("--ovf-offsets",), "ovf_offsets", "text", None, False, False),
    (("--ovf-feedback-grad",), "ovf_feedback_grad", "text", "none", True, False),
    (("--gammas",), "gammas", "text", None, False, False),
    (("--temperature",), "temperature", "float", None, False, False),
    (("--irs-layers",), "irs_layers", "text", None, False, False),
    (("--irs-pool",), "irs_pool", "text", None, False, False),
    # added with the reference training protocol
    (("--correctnet-penalty",), "correctnet_penalty", "text", "matrix", True, False),
    (("--ovf-bn-stats",), "ovf_bn_stats", "text", "backbone", True, False),
    (("--irs-head-sigma",), "irs_head_sigma", "float", None, False, False),
    (("--irs-head-state",), "irs_head_state", "text", "profile", True, False),
    (("--init",), "init", "text", "default", True, False),
    (("--sigma-warmup",), "sigma_warmup", "float", 0.0, True, False),
    (("--select",), "select", "text", "last", True, False),
    (("--val-fraction",), "val_fraction", "float", 0.1, True, False),
    # added with the data formats (image folders)
    (("--image-size",), "image_size", "text", None, False, False),
    (("--normalize",), "normalize", "text", None, False, False),
    (("--epochs",), "epochs", "integer", 5, True, False),
    (("--batch-size",), "batch_size", "integer", 128, True, False),
    (("--lr",), "lr", "float", 0.001, True, False),
    (("--schedule",), "schedule", "text", "cosine", True, False),
    (("--seed",), "seed", "integer", 0, True, False),
    (("--device",), "device", "text", "cpu", True, False),
    (("--dist-backend",), "dist_backend", "text", None, False, False),
    (("--expect-world-size",), "expect_world_size", "integer", None, False, False),
    (("--batched", "--sequential"), "batched", "boolean", None, False, True),
    (("--limit-train",), "limit_train", "integer", None, False, False),
    (("--limit-test",), "limit_test", "integer", None, False, False),
    (("-o", "--output"), "output", "text", "model.pt", True, False),
    (("--log",), "log_file", "text", None, False, False),
    (("--mc-chips",), "mc_chips", "integer", 0, True, False),
    (("--quiet",), "quiet", "boolean", None, False, True),
]


def _train_command():
    from nft_deploy.cli.train import train

    return train


def test_generated_flags_are_the_flags_the_cli_had():
    got = []
    for p in _train_command().params:
        default = None if p.is_flag and not p.secondary_opts else p.default
        got.append((tuple(p.opts + p.secondary_opts), p.name, p.type.name, default, bool(p.show_default), p.is_flag))
    assert sorted(got, key=str) == sorted(FLAGS_BEFORE, key=str)
    text = _run(["--help"]).output
    assert all(decl in text for decls, *_ in FLAGS_BEFORE for decl in decls)
    for section in ("Options of --method noise_injection:", "Options of --method ovf:",
                    "Options of --method irs (also --beta, --gammas):"):
        assert section in text


def _parsed(args):
    from nft_deploy.cli.train import config_from_params

    cmd = _train_command()
    return config_from_params(cmd, cmd.make_context("train", list(args)).params)


@pytest.mark.parametrize("args, expected", [
    ([], dict(output="model.pt")),  # the CLI's defaults: what the hand-written options gave
    (["--method", "ovf", "--beta", "0.01", "--ovf-n", "2", "--ovf-offsets", "0.2,0.1", "--gammas", "1,0.5",
      "--ovf-feedback-grad", "full", "--sequential", "--quiet", "-o", "x.pt", "--log", "x.json"],
     dict(method="ovf", beta=0.01, ovf_n=2, ovf_offsets=(0.2, 0.1), gammas=(1.0, 0.5), ovf_feedback_grad="full",
          batched=False, progress=False, output="x.pt", log="x.json")),
    (["--method", "irs", "--irs-layers", "conv1, pool1", "--irs-pool", "4,2", "--width", "0.5", "--sigma", "0.2"],
     dict(method="irs", irs_layers=("conv1", "pool1"), irs_pool=(4, 2), width=0.5, sigma=0.2, output="model.pt")),
    (["--method", "noise_injection", "--draws", "4", "--batched", "--epochs", "2", "--lr", "0.01",
      "--schedule", "constant", "--mc-chips", "3", "--limit-train", "10", "--limit-test", "5"],
     dict(method="noise_injection", draws=4, batched=True, epochs=2, lr=0.01, schedule="constant", mc_chips=3,
          limit_train=10, limit_test=5, output="model.pt")),
    (["--method", "temperature", "--temperature", "2.5", "--ovf-n", "5", "--device", "cuda", "--dist-backend", "gloo",
      "--expect-world-size", "2", "--seed", "7", "--batch-size", "8", "--profile", "rram_4bit"],
     dict(method="temperature", temperature=2.5, ovf_n=5, device="cuda", dist_backend="gloo", expect_world_size=2,
          seed=7, batch_size=8, profile="rram_4bit", output="model.pt")),
])
def test_representative_invocations_parse_to_the_same_train_config(args, expected):
    from nft_deploy.training import TrainConfig

    # the flat TrainConfig the hand-written CLI built from the same flags (its defaults spelled out)
    flat = dict(model="lenet5", width=None, data="mnist-5k", limit_train=None, limit_test=None, method="ovf",
                beta=None, draws=1, ovf_n=3, ovf_offsets=None, ovf_feedback_grad="none", gammas=None, temperature=None,
                irs_layers=None, irs_pool=None, batched=None, profile="nft_reference", sigma=None, epochs=5,
                batch_size=128, lr=1e-3, schedule="cosine", seed=0, device="cpu", dist_backend=None,
                expect_world_size=None, output="model.pt", log=None, mc_chips=0, progress=True)
    want = TrainConfig(**{**flat, **expected})
    got = _parsed(args)
    assert got == want and got.to_dict() == want.to_dict()
    assert type(got.method_config).__name__ == {"ovf": "OVFConfig", "irs": "IRSConfig", "noise_injection":
                                                "NoiseInjectionConfig", "temperature": "TemperatureConfig"}[got.method]
