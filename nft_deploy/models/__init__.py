"""Built-in architectures (LeNet-5, VGG-8, CIFAR-style ResNet-18), each with a width multiplier.

``build_model(name, **kwargs)`` makes one; a checkpoint stores the name and kwargs, never the module.
``IRS_LAYERS[name]`` names the layers whose outputs feed IRS snapshot heads by default.
"""

from __future__ import annotations

from nft_deploy.errors import ConfigError
from nft_deploy.models.lenet import LeNet5
from nft_deploy.models.resnet import ResNet18
from nft_deploy.models.vgg import VGG8

MODELS = {"lenet5": LeNet5, "vgg8": VGG8, "resnet18": ResNet18}

# Layers (module paths) after which IRS heads read a snapshot, shallowest first (see nft-method.md s.4).
IRS_LAYERS = {
    "lenet5": ("pool1", "pool2"),
    "vgg8": ("block1", "pool1", "pool2"),
    "resnet18": ("stem", "layer1", "layer2", "layer3"),
}


def build_model(name: str, **kwargs):
    """A fresh built-in model: ``name`` in MODELS; kwargs: in_channels, num_classes, input_size, width."""
    if name not in MODELS:
        raise ConfigError(f"--model: unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = ["IRS_LAYERS", "MODELS", "LeNet5", "ResNet18", "VGG8", "build_model"]
