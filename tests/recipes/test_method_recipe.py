"""Recipe: a new training method, registered from outside the package through the public registration
point, with its own option dataclass: it trains through the API and through ``nft-deploy train`` with its
generated flag, and its option reaches the method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from nft_deploy import training
from nft_deploy.cli import main
from nft_deploy.data import Dataset
from nft_deploy.training import SimpleMethod, TrainConfig, option, register_method, train, unregister_method


@dataclass(frozen=True)
class ScaledNoiseConfig:
    """scaled_noise options."""

    scale: float = option(1.0, "scaled_noise: multiply the noisy logits by S before the cross-entropy.",
                          flat="toy_scale", check="positive")


@dataclass(frozen=True)
class ScaledNoise(SimpleMethod):
    """Cross-entropy of scaled noisy logits; records every scale it trained with."""

    scale: float = 1.0
    noisy: ClassVar[bool] = True
    seen: ClassVar[list[float]] = []

    def loss(self, net, x, y):
        ScaledNoise.seen.append(self.scale)
        return F.cross_entropy(net.noisy(x) * self.scale, y)


@pytest.fixture
def scaled_noise():
    """``--method scaled_noise`` for the test, unregistered after it."""
    register_method("scaled_noise", config=ScaledNoiseConfig)(ScaledNoise)
    ScaledNoise.seen.clear()
    try:
        yield ScaledNoise
    finally:
        unregister_method("scaled_noise")


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 8)
        self.fc2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def tiny_data(n: int = 24) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 4, 4)).astype(np.float32)
    y = np.arange(n) % 3
    return Dataset("tiny", x, y, x[:12], y[:12], 3)


def test_a_method_registered_outside_the_package_trains_through_the_api(scaled_noise):
    assert training.METHOD_NAMES[-1] == "scaled_noise"  # derived from the registry on every read
    cfg = TrainConfig(method="scaled_noise", toy_scale=2.5, epochs=1, batch_size=8, progress=False)
    assert cfg.method_config == ScaledNoiseConfig(scale=2.5) and cfg.toy_scale == 2.5
    torch.manual_seed(0)
    r = train(cfg, data=tiny_data(), model=Tiny())
    assert r.method == {"name": "scaled_noise", "scale": 2.5} and len(r.history) == 1
    assert scaled_noise.seen == [2.5] * 3  # 24 samples at batch 8: three steps, each with the option's value
    scaled_noise.seen.clear()
    train(TrainConfig(method="scaled_noise", method_config=ScaledNoiseConfig(scale=0.5), epochs=1, batch_size=8,
                      progress=False), data=tiny_data(), model=Tiny())
    assert set(scaled_noise.seen) == {0.5}


def test_a_method_registered_outside_the_package_gets_its_cli_flag(scaled_noise, tmp_path):
    data = tmp_path / "d.npz"
    d = tiny_data(48)
    x = np.zeros((48, 1, 28, 28), np.float32)
    x[:, :, :4, :4] = d.x_train
    np.savez(data, x=x, y=d.y_train)
    runner = CliRunner()
    help_text = runner.invoke(main, ["train", "--help"]).output
    assert "Options of --method scaled_noise:" in help_text and "--toy-scale FLOAT" in help_text
    assert "scaled_noise." in help_text  # the --method help lists it
    r = runner.invoke(main, ["train", "--method", "scaled_noise", "--toy-scale", "3", "--width", "0.25", "--data",
                             str(data), "--epochs", "1", "--batch-size", "16", "--quiet", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("scaled_noise: clean") and set(scaled_noise.seen) == {3.0}
    r = runner.invoke(main, ["train", "--method", "scaled_noise", "--toy-scale", "-1", "--data", str(data),
                             "--epochs", "1", "-o", str(tmp_path / "m2.pt")])
    assert r.exit_code == 1 and "--toy-scale: must be a positive number" in r.output


def test_unregistering_removes_the_method_and_its_flag(scaled_noise):
    unregister_method("scaled_noise")
    assert "scaled_noise" not in training.METHOD_NAMES
    r = CliRunner().invoke(main, ["train", "--help"])
    assert "--toy-scale" not in r.output and "scaled_noise" not in r.output
