"""ConvTranspose: weight ``[C_in, C_out/group, *kernel]`` at input 1, output channels on axis 1
(torch and ONNX agree on the layout)."""

from __future__ import annotations

from nft_deploy.converters.handlers.site import Decline, OpFamily, TorchSite, WeightSite, constant_input


def handle(node) -> WeightSite | Decline:
    """Like Conv, but the stored layout puts output channels second."""
    if constant_input(node, 1) is None:
        return Decline("weight not constant", fatal=True)
    return WeightSite(weight_input=1, out_axis=1, data_input=0)


def torch_site(func: str, args: tuple, is_weight) -> TorchSite | None:
    if len(args) > 1 and is_weight(args[1]):
        return TorchSite(op="ConvTranspose", weight_arg=1, data_arg=0, out_axis=1)
    return None


FAMILY = OpFamily("conv_transpose", ("ConvTranspose",), handle,
                  ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"), torch_site,
                  fold_chips=True)
