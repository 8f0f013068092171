"""Crossbar arrays: how a mapped layer is split into arrays of ``array.rows`` x ``array.cols`` cells.

The tiling rule (profile section ``array``):

- A layer is a matrix per group: inputs on the rows, outputs on the columns. A Gemm or MatMul is one
  matrix (in x out). A convolution with ``group`` g is g matrices, each of its own arrays (groups are never
  packed together): ``C_in/g * k_h * k_w`` rows by ``C_out/g`` outputs. A depthwise convolution is thus
  ``C_in`` matrices of ``k_h * k_w`` rows and one output each.
- Rows: the input dimension is split into row tiles that fit ``rows``. A convolution keeps a kernel's taps in
  one array, so it splits input channels: a row tile holds ``k_h * k_w * c`` rows with ``c = floor(rows /
  (k_h * k_w))`` input channels (the last tile fewer); a kernel with more taps than ``rows`` is refused.
- Columns: each output takes ``cells`` columns (cells per weight), twice that with ``differential`` pairs;
  outputs are split into column tiles of at most ``floor(cols / columns per output)`` outputs (an output's
  columns stay in one array).
- Arrays = groups x row tiles x column tiles; utilization = the cells the weights occupy / the arrays' cells.

Partial-sum ADC: with ``io.output_bits``, each row tile's partial sum (the layer's output computed from that
tile's rows alone) goes through the ADC before the digital sum across row tiles. The ADC range is today's
full-scale rule applied to each partial sum: per sample, ``max |partial sum|`` over all outputs of the row
tile (one range shared by its column tiles). The bias, where the layer has one, is added with row tile 0
(so a layer of one row tile is exactly today's single ADC on the full output). A calibrated range
(``nft_deploy.calibration``) is per row tile, or per array: row tile ``k``'s entry is then one range per
(group, column tile) of that row tile, and each output channel's partial sum takes its array's range
(``adc_fixed``). Without an ADC the tiles sum to the untiled output (float rounding aside). Every engine
computes a row tile as the layer with the other rows' weights set to zero (``row_masks``), so torch and the
graph hold the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nft_deploy.errors import ExportError


@dataclass(frozen=True)
class Tiling:
    """How one layer sits on arrays (``tiling`` computes it)."""

    groups: int
    """Independent matrices (a convolution's ``group``; 1 otherwise)."""
    in_channels: int
    """Input channels per group (rows of a Gemm/MatMul)."""
    taps: int
    """Rows per input channel: ``k_h * k_w`` (1 for a Gemm/MatMul)."""
    outputs: int
    """Outputs per group."""
    columns_per_output: int
    """Cells per weight, x 2 for a differential pair."""
    channels_per_tile: int
    """Input channels in a full row tile."""
    row_tiles: int
    col_tiles: int
    rows: int
    cols: int

    @property
    def outputs_per_tile(self) -> int:
        """Outputs in a full column tile."""
        return self.cols // self.columns_per_output

    @property
    def arrays(self) -> int:
        return self.groups * self.row_tiles * self.col_tiles

    @property
    def used_cells(self) -> int:
        return self.groups * self.in_channels * self.taps * self.outputs * self.columns_per_output

    @property
    def utilization(self) -> float:
        """Occupied cells / cells of the layer's arrays (0..1)."""
        return self.used_cells / (self.arrays * self.rows * self.cols)

    def to_dict(self) -> dict:
        return {"row_tiles": self.row_tiles, "col_tiles": self.col_tiles, "arrays": self.arrays,
                "utilization": round(self.utilization, 6), "groups": self.groups}


def in_axis(out_axis: int) -> int:
    """The stored weight's input-channel axis: the other of axes 0 and 1 (taps follow on axes 2..)."""
    return 1 - out_axis


def tiling(shape: tuple[int, ...], out_axis: int, groups: int, cells: int, rows: int, cols: int,
           differential: bool, layer: str = "layer") -> Tiling:
    """The arrays of a weight of ``shape`` (the graph's layout) with ``groups`` groups."""
    ax = in_axis(out_axis)
    taps = math.prod(shape[2:]) if len(shape) > 2 else 1
    # a Conv stores C_in/g on axis 1 and all C_out on axis 0; a ConvTranspose all C_in on axis 0, C_out/g on 1
    n_in = shape[ax] // groups if ax == 0 else shape[ax]
    n_out = shape[out_axis] // groups if out_axis == 0 else shape[out_axis]
    per_output = cells * (2 if differential else 1)
    if taps > rows:
        raise ExportError(f"layer {layer!r}: a kernel of {taps} taps does not fit array.rows {rows}: the profile's "
                          f"array.rows must be >= {taps} (a kernel's taps stay in one array)")
    if per_output > cols:
        raise ExportError(f"layer {layer!r}: one output needs {per_output} columns ({cells} cells"
                          f"{' x 2 differential' if differential else ''}); the profile's array.cols must be >= "
                          f"{per_output}")
    per_tile = rows // taps
    outs_per_tile = cols // per_output
    return Tiling(groups, n_in, taps, n_out, per_output, per_tile, -(-n_in // per_tile), -(-n_out // outs_per_tile),
                  rows, cols)


def row_masks(shape: tuple[int, ...], out_axis: int, t: Tiling) -> list[np.ndarray]:
    """One 0/1 float32 mask per row tile, broadcastable over the weight: 1 on the input channels the tile
    holds (in every group). Empty when the layer is one row tile (nothing to split)."""
    if t.row_tiles <= 1:
        return []
    ax = in_axis(out_axis)
    local = np.arange(shape[ax]) % t.in_channels  # a ConvTranspose's axis 0 runs over every group
    tile_of = local // t.channels_per_tile
    view = [1] * len(shape)
    view[ax] = shape[ax]
    return [(tile_of == k).astype(np.float32).reshape(view) for k in range(t.row_tiles)]


def output_axis(shape: tuple[int, ...], weight_first: bool) -> int:
    """The output channel axis of a mapped call's output: 1 for a convolution (a weight of rank > 2), -2 for
    ``W @ X`` (the weight is the first operand), -1 otherwise (``X @ W``, Gemm, torch's ``linear(x, W)`` on an
    input of any rank). Decided by the weight's operand position, not by (op, out_axis): torch's ``linear``
    takes its weight second and its output channels are last."""
    return 1 if len(shape) > 2 else -2 if weight_first else -1


def graph_weight_first(lay) -> bool:
    """In a plan compiled from an ONNX graph, the weight is ``W @ X``'s first operand exactly when a MatMul
    stores it with output axis 0 (``X @ W`` stores (in, out); a Gemm's weight is input B)."""
    return lay.op == "MatMul" and lay.out_axis == 0


def array_channels(t: Tiling) -> list[slice]:
    """The output channels of each array of a row tile, in (group, column tile) order: group ``g``'s outputs
    are channels ``g * outputs ..``, split into column tiles of ``outputs_per_tile``."""
    per = t.outputs_per_tile
    return [slice(g * t.outputs + j * per, g * t.outputs + min(t.outputs, (j + 1) * per))
            for g in range(t.groups) for j in range(t.col_tiles)]


def array_weights(w: np.ndarray, out_axis: int, t: Tiling, k: int) -> list[np.ndarray]:
    """Row tile ``k``'s weights of each array in (group, column tile) order (``array_channels``); axis 0
    spans every group (a ConvTranspose's inputs, a Conv's outputs), axis 1 one group's (as ``tiling`` reads)."""
    ax, per = in_axis(out_axis), t.outputs_per_tile
    lo, hi = k * t.channels_per_tile, min(t.in_channels, (k + 1) * t.channels_per_tile)
    out = []
    for g in range(t.groups):
        for j in range(t.col_tiles):
            idx = [slice(None)] * w.ndim
            idx[ax] = slice(lo + g * t.in_channels, hi + g * t.in_channels) if ax == 0 else slice(lo, hi)
            o_lo, o_hi = j * per, min(t.outputs, (j + 1) * per)
            idx[out_axis] = slice(o_lo + g * t.outputs, o_hi + g * t.outputs) if out_axis == 0 else slice(o_lo, o_hi)
            out.append(w[tuple(idx)])
    return out


def adc_fixed(lay, k: int, rank: int | None, weight_first: bool) -> float | np.ndarray | None:
    """Row tile ``k``'s calibrated ADC range as a converter takes it (``lay`` a ``LayerPlan``): None (full scale
    per sample), a float shared by the row tile's arrays, or one range per output channel (each its array's),
    float32 shaped to broadcast over an output of ``rank`` dimensions (``weight_first``: ``output_axis``)."""
    entry = lay.adc_range[k] if lay.adc_range else None
    if entry is None or np.ndim(entry) == 0:
        return entry
    if rank is None:
        raise ExportError(f"layer {lay.name!r}: ranges per array need the rank of its output, which the graph "
                          "does not state; export the float model with shape information")
    per_channel = np.concatenate([np.full(s.stop - s.start, r, np.float32)
                                  for s, r in zip(array_channels(lay.tiles), entry, strict=True)])
    axis = output_axis(lay.shape, weight_first) % rank
    return per_channel.reshape((-1,) + (1,) * (rank - 1 - axis))


def totals(tilings: list[Tiling]) -> dict:
    """Model totals: arrays, occupied cells and utilization over every array."""
    arrays = sum(t.arrays for t in tilings)
    cells = sum(t.arrays * t.rows * t.cols for t in tilings)
    used = sum(t.used_cells for t in tilings)
    return {"arrays": arrays, "cells": cells, "used_cells": used,
            "utilization": round(used / cells, 6) if cells else 0.0}


__all__ = ["Tiling", "adc_fixed", "array_channels", "array_weights", "graph_weight_first", "in_axis", "output_axis",
           "row_masks", "tiling", "totals"]
