"""CIFAR-style ResNet-18: 3x3 stem, no max-pool, four stages of two basic blocks, 1x1 shortcuts; any
image size (global average pooling), square or not."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with an identity or 1x1-conv shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for small images; ``width`` scales 64-128-256-512.

    Inputs: any (C, H, W) with H, W >= ``MIN_INPUT_SIZE`` (1), square or not: the stride-2 3x3 convs
    (padding 1) map a side s to ceil(s / 2) >= 1 and global average pooling feeds fc, so the model is the
    same for every size. Below 8 pixels the last stage sees a 1x1 map; training then needs batches of at
    least two samples (batch norm), which the trainer checks.
    """

    MIN_INPUT_SIZE = 1
    """Smallest image side (pixels) this model takes."""
    SQUARE_ONLY = False
    """Global average pooling: H x W images of any aspect work."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 32, width: float = 0.25):
        super().__init__()
        del input_size  # global average pooling: any size works; kept for a uniform signature
        c = [max(1, round(n * width)) for n in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c[0], 3, 1, 1, bias=False), nn.BatchNorm2d(c[0]),
                                  nn.ReLU(inplace=True))
        stages, cin = [], c[0]
        for i, cout in enumerate(c):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))
