"""ConvTranspose: weight ``[C_in, C_out/group, *kernel]`` at input 1, output channels on axis 1
(torch and ONNX agree on the layout): a Conv but for the stored layout putting output channels second."""

from __future__ import annotations

from nft_deploy.converters.handlers.conv import conv_family

FAMILY = conv_family("conv_transpose", "ConvTranspose",
                     ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"), out_axis=1)
