"""Conv: weight ``[C_out, C_in/group, *kernel]`` at input 1, output channels on axis 0
(torch ``conv1d/2d/3d(input, weight, ...)``, the same layout)."""

from __future__ import annotations

from nft_deploy.converters.handlers.site import Decline, OpFamily, TorchSite, WeightSite, constant_input


def handle(node) -> WeightSite | Decline:
    """A Conv always carries a crossbar weight: a non-constant one cannot be programmed (fatal)."""
    if constant_input(node, 1) is None:
        return Decline("weight not constant", fatal=True)
    return WeightSite(weight_input=1, out_axis=0, data_input=0)


def torch_site(func: str, args: tuple, is_weight) -> TorchSite | None:
    if len(args) > 1 and is_weight(args[1]):
        return TorchSite(op="Conv", weight_arg=1, data_arg=0, out_axis=0)
    return None


FAMILY = OpFamily("conv", ("Conv",), handle, ("conv1d", "conv2d", "conv3d"), torch_site, fold_chips=True)
