"""Conv: weight ``[C_out, C_in/group, *kernel]`` at input 1, output channels on axis 0
(torch ``conv1d/2d/3d(input, weight, ...)``, the same layout). ``conv_family`` also builds ConvTranspose,
which differs only in the axis of the output channels."""

from __future__ import annotations

from nft_deploy.converters.handlers.site import Decline, OpFamily, TorchSite, WeightSite, constant_input


def conv_family(name: str, op: str, torch_functions: tuple[str, ...], out_axis: int) -> OpFamily:
    """A convolution family: the weight at input/argument 1, the activation at 0, output channels on
    ``out_axis`` of the stored weight."""

    def handle(node) -> WeightSite | Decline:
        """A convolution always carries a crossbar weight: a non-constant one cannot be programmed (fatal)."""
        if constant_input(node, 1) is None:
            return Decline("weight not constant", fatal=True)
        return WeightSite(weight_input=1, out_axis=out_axis, data_input=0)

    def torch_site(func: str, args: tuple, is_weight) -> TorchSite | None:
        if len(args) > 1 and is_weight(args[1]):
            return TorchSite(op=op, weight_arg=1, data_arg=0, out_axis=out_axis, bias_arg=2)
        return None

    return OpFamily(name, (op,), handle, torch_functions, torch_site, fold_chips=True)


FAMILY = conv_family("conv", "Conv", ("conv1d", "conv2d", "conv3d"), out_axis=0)
