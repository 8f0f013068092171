"""VGG-8 as in the NFT reference: six 3x3 convs (64-128-256-256-512-512, BN+ReLU, max-pool after
conv 2/4/6) and FC 8192-1024-C, with a width multiplier (1/4 width fits a 2-core CPU); square images of at
least 8x8."""

from __future__ import annotations

import torch
from torch import nn

from nft_deploy.errors import ConfigError


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class VGG8(nn.Module):
    """VGG-8; ``input_size`` 32 gives the reference FC 8192 (at width 1).

    Inputs: square images (C, H, H) with H >= ``MIN_INPUT_SIZE`` (8): three 2x2 max-pools must leave at
    least a 1x1 map, and fc1 is sized from H // 8, so the model refuses smaller inputs.
    """

    MIN_INPUT_SIZE = 8
    """Smallest image side (pixels) this model takes."""
    SQUARE_ONLY = True
    """fc1 is sized from one side: H x W images need H == W."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 32, width: float = 0.25):
        super().__init__()
        if input_size < self.MIN_INPUT_SIZE:
            raise ConfigError(f"vgg8: input_size {input_size}: the smallest input VGG-8 takes is "
                              f"{self.MIN_INPUT_SIZE}x{self.MIN_INPUT_SIZE}")
        c = [max(1, round(n * width)) for n in (64, 128, 256, 256, 512, 512)]
        self.block1 = _block(in_channels, c[0])
        self.block2 = _block(c[0], c[1])
        self.pool1 = nn.MaxPool2d(2)
        self.block3 = _block(c[1], c[2])
        self.block4 = _block(c[2], c[3])
        self.pool2 = nn.MaxPool2d(2)
        self.block5 = _block(c[3], c[4])
        self.block6 = _block(c[4], c[5])
        self.pool3 = nn.MaxPool2d(2)
        side = input_size // 8
        hidden = max(1, round(1024 * width))
        self.fc1 = nn.Linear(c[5] * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.block2(self.block1(x)))
        x = self.pool2(self.block4(self.block3(x)))
        x = self.pool3(self.block6(self.block5(x)))
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)
