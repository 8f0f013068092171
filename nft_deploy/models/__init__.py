"""Built-in architectures (LeNet-5, VGG-8, CIFAR-style ResNet-18), each with a width multiplier.

``build_model(name, **kwargs)`` makes one; a checkpoint stores the name and kwargs, never the module.
``IRS_LAYERS[name]`` names the layers whose outputs feed IRS snapshot heads by default.

Inputs: each class states ``MIN_INPUT_SIZE`` (smallest image side: LeNet-5 12, VGG-8 8, ResNet-18 1) and
``SQUARE_ONLY`` (LeNet-5 and VGG-8 size their first FC layer from one side, so they need H == W; ResNet-18
pools globally and takes any H x W). ``check_input_shape`` refuses a sample shape a built-in model cannot
take, in one line, before anything is built or trained.
"""

from __future__ import annotations

from nft_deploy.errors import ConfigError, DataError
from nft_deploy.models.lenet import LeNet5
from nft_deploy.models.resnet import ResNet18
from nft_deploy.models.vgg import VGG8

MODELS = {"lenet5": LeNet5, "vgg8": VGG8, "resnet18": ResNet18}

# Layers (module paths) after which IRS heads read a snapshot, shallowest first, as the NFT reference code
# places its snapshot heads (Qin et al., arXiv 2305.14561).
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


def input_limits() -> str:
    """What every built-in model takes, for messages: 'lenet5 >= 12x12 square, ...'."""
    return ", ".join(f"{n} >= {m.MIN_INPUT_SIZE}x{m.MIN_INPUT_SIZE}{' square' if m.SQUARE_ONLY else ' (any H x W)'}"
                     for n, m in MODELS.items())


def input_problem(name: str, shape: tuple[int, ...]) -> str | None:
    """Why the built-in model ``name`` cannot take samples of ``shape`` (one sample, no batch), or None.

    The text reads after ``<data>: x: ``; it says what is wrong and what is allowed.
    """
    cls = MODELS[name]
    shape = tuple(int(s) for s in shape)
    need = (f"the built-in model {name!r} needs square images (C, H, H) of at least {cls.MIN_INPUT_SIZE}x"
            f"{cls.MIN_INPUT_SIZE}" if cls.SQUARE_ONLY else
            f"the built-in model {name!r} needs images (C, H, W) of at least {cls.MIN_INPUT_SIZE}x{cls.MIN_INPUT_SIZE}")
    if len(shape) != 3:
        kind = "1-D feature vectors" if len(shape) == 1 else f"{len(shape)}-D"
        return (f"samples of shape {shape} are {kind}; {need} (save x as (N, H, W) or (N, C, H, W)), or pass "
                "your own nn.Module")
    c, h, w = shape
    if c > 4 and h > 4 and w in (1, 3, 4):
        return (f"samples of shape {shape} look channels-last (H, W, C) with {w} channel(s); {need}: save x as "
                "(N, C, H, W), e.g. x.transpose(0, 3, 1, 2)")
    if cls.SQUARE_ONLY and h != w:
        return (f"samples of shape {shape} are {h}x{w} images, not square; {need} (resnet18 takes any H x W), "
                "or pass your own nn.Module for other shapes")
    if min(h, w) < cls.MIN_INPUT_SIZE:
        return f"{h}x{w} images are too small; {need} (built-in models: {input_limits()})"
    return None


def check_input_shape(name: str, shape: tuple[int, ...], where: str) -> None:
    """Raise DataError ``<where>: x: ...`` when the built-in model ``name`` cannot take ``shape``."""
    problem = input_problem(name, shape)
    if problem is not None:
        raise DataError(f"{where}: x: {problem}")


__all__ = ["IRS_LAYERS", "MODELS", "LeNet5", "ResNet18", "VGG8", "build_model", "check_input_shape",
           "input_limits", "input_problem"]
