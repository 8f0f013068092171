"""Row tiles in the graph (``nft_deploy.arrays`` states the rule): a mapped node whose layer spans several row
tiles becomes one copy of the node per tile, each reading the deployed weight times the tile's 0/1 row mask
(``Mul``), an ADC on each copy's output (the partial sum) when the plan has one (a calibrated range per array
is a constant broadcast over the output's channel axis: ``arrays.adc_fixed``), and ``Add`` nodes summing the
tiles in order into the node's original output. Only the first copy keeps the bias. Standard ONNX ops only;
``nft_deploy.training.tiles`` computes the same in torch."""

from __future__ import annotations

import onnx_graphsurgeon as gs
from nft_deploy.converters.device_nodes import Emitter, quantize_output

from nft_deploy.arrays import adc_fixed, row_masks
from nft_deploy.device_plan import LayerPlan


def is_tiled(lay: LayerPlan) -> bool:
    """The layer spans more than one row tile (so its partial sums are computed apart)."""
    return lay.tiles is not None and lay.tiles.row_tiles > 1


def insert_row_tiles(em: Emitter, graph: gs.Graph, node: gs.Node, weight_input: int, data_input: int | None,
                     lay: LayerPlan, opset: int) -> None:
    """Replace ``node`` by its row tiles (see the module docstring); ``graph`` loses the original node."""
    out, inputs, attrs = node.outputs[0], list(node.inputs), dict(node.attrs)
    weight = inputs[weight_input]
    keep = {weight_input} | ({data_input} if data_input is not None else set())
    node.inputs.clear()
    node.outputs.clear()
    graph.nodes.remove(node)
    total = None
    masks = row_masks(lay.shape, lay.out_axis, lay.tiles)
    for k, mask in enumerate(masks):
        tile_inputs = [t for i, t in enumerate(inputs) if k == 0 or i in keep]
        tile_inputs[weight_input] = em.op("Mul", [weight, em.const(f"mask{k}", mask)], f"weight{k}")
        last = k == len(masks) - 1
        part = em.op(node.op, tile_inputs, f"tile{k}", attrs,
                     output=gs.Variable(f"{em.prefix}/tile{k}", dtype=out.dtype, shape=out.shape))
        if lay.output_bits:
            part = quantize_output(em, part, lay.output_bits, f"adc{k}", opset,
                                   fixed=adc_fixed(lay, k, len(out.shape) if out.shape else None, weight_input == 0))
        if total is None:
            total = part
        else:
            total = em.op("Add", [total, part], f"psum{k}", output=out if last else None)


__all__ = ["insert_row_tiles", "is_tiled"]
