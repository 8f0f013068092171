"""LeNet-5 (conv 6-16, FC 120-84-C) for 28x28 or 32x32 inputs; square images of at least 12x12."""

from __future__ import annotations

import torch
from torch import nn

from nft_deploy.errors import ConfigError


def _ch(n: int, width: float) -> int:
    return max(1, round(n * width))


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max-pooling; ``width`` scales every hidden layer.

    Inputs: square images (C, H, H) with H >= ``MIN_INPUT_SIZE`` (12). The 5x5 conv2 needs a 5x5 map after
    the first pool (H >= 10) and the second pool a 2x2 map after conv2 (H >= 12); fc1 is sized from H, so
    the model takes exactly ``input_size`` and refuses smaller (no padding: that would be another model).
    """

    MIN_INPUT_SIZE = 12
    """Smallest image side (pixels) this model takes."""
    SQUARE_ONLY = True
    """fc1 is sized from one side: H x W images need H == W."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28, width: float = 1.0):
        super().__init__()
        if input_size < self.MIN_INPUT_SIZE:
            raise ConfigError(f"lenet5: input_size {input_size}: the smallest input LeNet-5 takes is "
                              f"{self.MIN_INPUT_SIZE}x{self.MIN_INPUT_SIZE}")
        c1, c2, f1, f2 = _ch(6, width), _ch(16, width), _ch(120, width), _ch(84, width)
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.pool2 = nn.MaxPool2d(2)
        side = ((input_size // 2) - 4) // 2
        self.fc1 = nn.Linear(c2 * side * side, f1)
        self.fc2 = nn.Linear(f1, f2)
        self.fc3 = nn.Linear(f2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)
