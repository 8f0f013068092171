"""Row tiles of a mapped torch call, as ``nft_deploy.arrays`` defines them: each row tile's partial sum is
the call with the other rows' weights zeroed (``arrays.row_masks``), through the ADC when the plan has one
(straight-through in training; with ranges per array, each output channel at its array's: ``arrays.adc_fixed``),
summed in tile order; the bias is added with tile 0. The graph's
``converters.array_nodes`` computes the same nodes."""

from __future__ import annotations

import numpy as np
import torch

from nft_deploy.arrays import adc_fixed, row_masks
from nft_deploy.converters.handlers import weight_of
from nft_deploy.device_plan import LayerPlan
from nft_deploy.noise import quantize_activation


def conv_groups(func, args: tuple, kwargs: dict) -> int:
    """A torch convolution's ``groups`` (argument 6 of ``conv*d`` and ``conv_transpose*d``); 1 for other calls."""
    if "conv" not in getattr(func, "__name__", ""):
        return 1
    return int(args[6] if len(args) > 6 else kwargs.get("groups", 1))


def tiled_call(func, args: list, kwargs: dict, site, lay: LayerPlan, bias: int | None):
    """The call as the sum of its row tiles' (ADC-quantized) partial sums, its bias (argument ``bias``,
    ``handlers.bias_position``) with tile 0; None when the layer is one row tile."""
    masks = row_masks(lay.shape, lay.out_axis, lay.tiles) if lay.tiles is not None else []
    if not masks:
        return None
    w = weight_of(args, site)
    out = None
    for k, mask in enumerate(masks):
        a = list(args)
        mask = mask if lay.layout is None else lay.layout.to_torch(mask)  # the plan's rows are the graph's
        a[site.weight_arg] = w * torch.from_numpy(np.ascontiguousarray(mask)).to(device=w.device, dtype=w.dtype)
        if k and bias is not None and len(a) > bias and isinstance(a[bias], torch.Tensor):
            a[bias] = torch.zeros_like(a[bias])  # the bias joins tile 0 only (addmm takes no None)
        part = func(*a, **({key: v for key, v in kwargs.items() if key != "bias"} if k else kwargs))
        part = quantize_activation(part, lay.output_bits, adc_fixed(lay, k, part.ndim, site.weight_arg == 0)) if lay.output_bits else part
        out = part if out is None else out + part
    return out


__all__ = ["conv_groups", "tiled_call"]
