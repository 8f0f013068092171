"""The nodes that turn one float weight into the weight a programmed chip holds, and the DAC/ADC nodes.

Per layer: ``deployed = scale * q + (scale * std_map) * CHIP + scale * STUCK + scale * read_std * N``
with ``q`` rounded in-graph from the float initializer, ``CHIP``/``STUCK`` graph inputs (one draw per
programmed chip) and ``N`` a seeded ``RandomNormalLike`` (redrawn per inference). ``scale`` and
``std_map`` are constants from ``NoiseModel``; nothing here re-derives the noise maths. Only standard
ONNX ops on initializers and chip inputs, so ORT can constant-fold a chip once its inputs are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs
from nft_deploy.converters.drift_nodes import build_drift

from nft_deploy.device_plan import LayerPlan
from nft_deploy.errors import ExportError
from nft_deploy.noise import NoiseModel

DEPLOYED_SUFFIX = "/weight"  # the deployed weight tensor is named f"nft/{layer}/weight"


@dataclass(frozen=True)
class DeployedWeight:
    """What ``build_deployed_weight`` added for one layer."""

    tensor: gs.Tensor
    """The tensor the mapped nodes read instead of the float initializer (the initializer itself when
    the layer is ideal)."""
    chip_input: str | None
    stuck_input: str | None
    nodes: int
    """Number of nodes inserted."""


class Emitter:
    """The nodes of one layer, made by ``Graph.layer`` with node and output named ``f"{prefix}/{name}"``
    (stable names: tests and tools read ``nft/<layer>/weight``), and named constants created once.

    ``Graph.layer`` lists every tensor of its graph on each call, so the nodes are made in a graph of
    their own (``nodes``) and each is appended to the model's graph as it is made: the pass stays linear
    in the model's size."""

    def __init__(self, graph: gs.Graph, prefix: str):
        self.graph, self.prefix, self.nodes = graph, prefix, gs.Graph()
        self._consts: dict[str, gs.Constant] = {}

    @property
    def count(self) -> int:
        """Number of nodes inserted."""
        return len(self.nodes.nodes)

    def const(self, name: str, values: np.ndarray) -> gs.Constant:
        """A named constant, created once per name (later calls with the same name reuse it)."""
        if name not in self._consts:
            self._consts[name] = gs.Constant(f"{self.prefix}/{name}", np.ascontiguousarray(values))
        return self._consts[name]

    def op(self, op_type: str, inputs: list, name: str, attrs: dict | None = None, dtype=np.float32,
           output: gs.Variable | None = None) -> gs.Variable:
        """One node; its output is ``output`` or a fresh ``dtype`` variable."""
        out = output if output is not None else gs.Variable(f"{self.prefix}/{name}", dtype=dtype)
        (out,) = self.nodes.layer(op=op_type, name=f"{self.prefix}/{name}", attrs=attrs or {}, inputs=list(inputs),
                                  outputs=[out])
        self.graph.nodes.append(self.nodes.nodes[-1])
        return out


def build_deployed_weight(graph: gs.Graph, lay: LayerPlan, weight: gs.Constant, read_seed: float,
                          opset: int) -> DeployedWeight:
    """Insert the quantization, variation, stuck-at and read-noise nodes of one planned layer."""
    layer, out_axis, nm = lay.name, lay.out_axis, lay.noise
    w64 = np.asarray(weight.values, np.float64)
    scale = nm.scale(w64, out_axis)
    em = Emitter(graph, f"nft/{layer}")
    quantized = _quantized(em, weight, scale, out_axis, nm, opset)
    terms, variation, stuck_term = [quantized], None, None
    chip_name, stuck_name = lay.chip_input, lay.stuck_input
    if chip_name:
        chip = gs.Variable(chip_name, dtype=np.float32, shape=list(weight.shape))
        graph.inputs.append(chip)
        std = _std_map(nm, w64, scale)
        variation = em.op("Mul", [chip, em.const("abs_std", (scale * std).astype(np.float32))], "variation")
        terms.append(variation)
    if stuck_name:
        stuck = gs.Variable(stuck_name, dtype=np.float32, shape=list(weight.shape))
        graph.inputs.append(stuck)
        stuck_term = em.op("Mul", [stuck, em.const("scale", scale.astype(np.float32))], "stuck")
        terms.append(stuck_term)
    read_std = em.const("read_std", (scale * nm.read_std).astype(np.float32)) if nm.read_std > 0 else None
    if lay.drift_input:  # the sum so far is the read at t0; drift_nodes reads it at nft.time
        programmed = _sum(em, terms, "sum")
        drifted, read_std = build_drift(em, graph, lay, weight, scale, quantized if nm.weights.quantize else None,
                                        variation, stuck_term, programmed, opset)
        terms = [drifted]
    if read_std is not None:
        normal = em.op("RandomNormalLike", [weight], "read_normal",
                       {"dtype": 1, "mean": 0.0, "scale": 1.0, "seed": float(read_seed)})
        terms.append(em.op("Mul", [normal, read_std], "read"))
    out = _sum(em, terms, "sum" if not lay.drift_input else "read_sum")
    if em.count and out is not weight:
        out.name = f"nft/{layer}{DEPLOYED_SUFFIX}"
    return DeployedWeight(tensor=out, chip_input=chip_name, stuck_input=stuck_name, nodes=em.count)


def _sum(em: Emitter, terms: list, tag: str):
    out = terms[0]
    for i, t in enumerate(terms[1:]):
        out = em.op("Add", [out, t], f"{tag}{i}")
    return out


def _std_map(nm: NoiseModel, w64: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``NoiseModel.std_map`` of the programmed levels; a scalar when it is uniform (no state dependence),
    which keeps the constant small and skips quantizing a large weight in float64."""
    sd = nm.profile.programming.state_dependent
    if sd is None or sd.factor == 1.0:
        return np.asarray(nm.weight_std)
    return nm.std_map(nm.quantize_normalised(w64 / scale))


def _quantized(em: Emitter, weight: gs.Constant, scale: np.ndarray, out_axis: int, nm: NoiseModel,
               opset: int) -> gs.Tensor:
    """``scale * q``: the programmed levels (the float initializer itself without quantization)."""
    spec = nm.weights
    if not spec.quantize:
        return weight
    levels = float(spec.levels)
    if spec.quant_style == "qdq":
        return _qdq(em, weight, scale, out_axis, spec.levels, opset)
    s32 = scale.astype(np.float32)
    x = em.op("Div", [weight, em.const("scale", s32)], "normalised")
    x = em.op("Mul", [x, em.const("levels", np.array(levels, np.float32))], "scaled")
    x = em.op("Round", [x], "round")
    x = em.op("Clip", [x, em.const("lo", np.array(-levels, np.float32)), em.const("hi", np.array(levels, np.float32))],
              "clip")
    return em.op("Mul", [x, em.const("step", (scale / levels).astype(np.float32))], "quantized")


def _qdq(em: Emitter, weight: gs.Constant, scale: np.ndarray, out_axis: int, levels: int, opset: int) -> gs.Tensor:
    """QuantizeLinear/DequantizeLinear with zero point 0 and step ``scale / L`` (int8, or int16 from opset 21)."""
    if levels <= 127:
        zdtype = np.int8
    elif levels <= 32767 and opset >= 21:
        zdtype = np.int16
    else:
        raise ExportError(f"weights.quant_style: 'qdq' with {int(np.log2(levels + 1))}-bit weights needs int16 "
                          f"QuantizeLinear (ONNX opset >= 21, the model has {opset}); export with --opset 21 "
                          f"or use quant_style 'round_clip'")
    step = (scale / levels).astype(np.float32)
    attrs = {}
    if step.size > 1:
        step, attrs = step.reshape(-1), {"axis": out_axis}
    else:
        step = step.reshape(())
    step_c, zero_c = em.const("step", step), em.const("zero", np.zeros(step.shape, zdtype))
    q = em.op("QuantizeLinear", [weight, step_c, zero_c], "quantize", attrs, dtype=zdtype)
    return em.op("DequantizeLinear", [q, step_c, zero_c], "quantized", attrs)


def insert_io_quantization(em: Emitter, node: gs.Node, data_input: int | None, input_bits: int | None,
                           output_bits: int | None, opset: int, dac_range: float | None = None,
                           adc_range: float | np.ndarray | None = None) -> None:
    """Input DAC on the node's activation, output ADC on its output, as ``quantize_activation`` defines
    (with a calibrated range where one is given: an ADC's may be one per output channel, ``arrays.adc_fixed``)."""
    if input_bits and data_input is not None:
        node.inputs[data_input] = _quantize_activation(em, node.inputs[data_input], input_bits, "dac", opset,
                                                       fixed=dac_range)
    if output_bits:
        out = node.outputs[0]
        raw = gs.Variable(f"{em.prefix}/adc_in", dtype=out.dtype, shape=out.shape)
        node.outputs[0] = raw
        _quantize_activation(em, raw, output_bits, "adc", opset, output=out, fixed=adc_range)


def quantize_output(em: Emitter, x: gs.Tensor, bits: int, tag: str, opset: int,
                    fixed: float | np.ndarray | None = None) -> gs.Variable:
    """An ADC on ``x`` (a row tile's partial sum), as ``quantize_activation`` defines."""
    return _quantize_activation(em, x, bits, tag, opset, fixed=fixed)


def _quantize_activation(em: Emitter, x: gs.Tensor, bits: int, tag: str, opset: int,
                         output: gs.Variable | None = None, fixed: float | np.ndarray | None = None):
    """``round(x / m * L) * m / L`` with ``m = max|x|`` per sample (1 where m = 0), ``L = 2^(b-1)-1``.

    The range is taken over every axis but the first (the batch), so a sample's result does not depend
    on which other samples share its batch. The rank comes from the graph's shape information."""
    rank = len(x.shape) if x.shape is not None else None
    if not rank:
        raise ExportError(f"{em.prefix}: a DAC/ADC needs the rank of {x.name!r}, which the graph does not state; "
                          "export the float model with shape information (onnx.shape_inference)")
    levels = em.const(f"{tag}_levels", np.array(2.0 ** (bits - 1) - 1, np.float32))
    if fixed is not None:  # a calibrated range (one, or one per output channel): the levels beyond it clip
        m = em.const(f"{tag}_range", np.array(fixed, np.float32))
        y = em.op("Round", [em.op("Mul", [em.op("Div", [x, m], f"{tag}_norm"), levels], f"{tag}_scaled")],
                  f"{tag}_round")
        lo = em.const(f"{tag}_lo", np.array(-(2.0 ** (bits - 1) - 1), np.float32))
        y = em.op("Mul", [em.op("Clip", [y, lo, levels], f"{tag}_clip"), m], f"{tag}_rescaled")
        return em.op("Div", [y, levels], f"{tag}_out", output=output)
    axes = list(range(1, rank))
    absx = em.op("Abs", [x], f"{tag}_abs")
    if not axes:
        m = absx
    elif opset >= 18:
        m = em.op("ReduceMax", [absx, em.const(f"{tag}_axes", np.array(axes, np.int64))], f"{tag}_max",
                  {"keepdims": 1})
    else:
        m = em.op("ReduceMax", [absx], f"{tag}_max", {"axes": axes, "keepdims": 1})
    pos = em.op("Greater", [m, em.const(f"{tag}_zero", np.array(0.0, np.float32))], f"{tag}_pos", dtype=np.bool_)
    m = em.op("Where", [pos, m, em.const(f"{tag}_one", np.array(1.0, np.float32))], f"{tag}_range")
    y = em.op("Round", [em.op("Mul", [em.op("Div", [x, m], f"{tag}_norm"), levels], f"{tag}_scaled")], f"{tag}_round")
    y = em.op("Mul", [y, m], f"{tag}_rescaled")
    return em.op("Div", [y, levels], f"{tag}_out", output=output)
