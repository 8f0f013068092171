"""Tiny data and a tiny user-defined model, so every training test runs in well under a second."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nft_deploy.data import Dataset


class TinyNet(nn.Module):
    """A user module (not a built-in): conv + batch-norm + pool, then two linear layers."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(4 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def tiny_dataset(n_train: int = 96, n_test: int = 48, seed: int = 0) -> Dataset:
    """3 classes of 8x8 images: a bright 4x4 quadrant per class plus noise (learnable in a few steps)."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 3, n)
        x = rng.random((n, 1, 8, 8)).astype(np.float32) * 0.3
        for i, c in enumerate(y):
            r, s = divmod(int(c), 2)
            x[i, 0, 4 * r: 4 * r + 4, 4 * s: 4 * s + 4] += 0.7
        return x, y.astype(np.int64)

    x, y = make(n_train)
    xt, yt = make(n_test)
    return Dataset("tiny", x, y, xt, yt, 3)


@pytest.fixture
def tiny_data() -> Dataset:
    return tiny_dataset()


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()
