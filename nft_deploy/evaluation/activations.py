"""Memory one sample's activations take while a batch runs, from ONNX shape inference.

The rule (``activation_bytes``): every data input's batch dimension is set to 1 and ONNX shape inference
gives each tensor its shape (ONNX Runtime's symbolic inference where ONNX's leaves one unknown, as it does
after torch's flatten); the tensors computed from the data inputs are the activations (those computed
only from weights and chips are in the weight term of ``local_backend.worker_bytes``). Walking the nodes
in graph order (a topological order, as ONNX requires), an activation is live from the node that makes it
(or the start, for a data input) to the last node that reads it (the end, for a graph output); the result
is the largest sum of live bytes at any node, counting a node's inputs and outputs together.

Why the peak and not the sum: ONNX Runtime's allocation planner gives a tensor's buffer to a later one
once its last reader has run, so the sum of all activations (5x the peak on a deployed ResNet-18 or VGG-8,
16x on ResNet-50) would refuse runs that fit. A worker's memory grows with the batch size times this
figure; what the runtime adds on top of it (arena rounding, layout copies, kernels' scratch buffers) is
``local_backend.ACTIVATION_FACTOR``, measured by ``benchmarks/activation_memory.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper

SHAPE_ONLY_ABOVE = 64
"""Initializers with more elements than this go to shape inference as typed inputs (their shape, not their
bytes): the estimate stays cheap for large models; small ones (Reshape targets) keep their values."""


def activation_bytes(proto: onnx.ModelProto, data_inputs: Iterable[str]) -> int | None:
    """Peak bytes of live activations for one sample (the rule is this module's docstring), or None
    where a shape is unknown (``activation_sizes``): the caller then leaves activations out, as before."""
    data_inputs = list(data_inputs)
    sizes = activation_sizes(proto, data_inputs)
    if sizes is None:
        return None
    return peak_live(proto.graph.node, sizes, data_inputs, [o.name for o in proto.graph.output])


def activation_sizes(proto: onnx.ModelProto, data_inputs: list[str]) -> dict[str, int] | None:
    """Bytes of each activation of one sample, or None where a shape is unknown after inference (a dimension
    other than the batch is dynamic, a node has subgraphs, inference fails)."""
    if any(a.type == onnx.AttributeProto.GRAPH or a.graphs for n in proto.graph.node for a in n.attribute):
        return None
    light = _one_sample(proto, data_inputs)
    for infer in (_onnx_shapes, _runtime_shapes):
        try:
            g = infer(light).graph
        except Exception:  # inference raises many types (InferenceError, AssertionError...): all mean unknown
            continue
        sizes = _sizes(g, data_inputs)
        if sizes is not None:
            return sizes
    return None


def _onnx_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)


def _runtime_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's symbolic shape inference: it folds shape arithmetic that ONNX's leaves unknown (a
    torch export's flatten: Shape -> Squeeze -> Reshape -> Concat -> Reshape)."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    return SymbolicShapeInference.infer_shapes(model, auto_merge=True)


def _sizes(g, data_inputs: list[str]) -> dict[str, int] | None:
    """Bytes of each activation of one sample, or None if any shape is not static."""
    known = {v.name: v for v in [*g.input, *g.value_info, *g.output]}
    sizes = {}
    for name in _computed_from(g.node, data_inputs):
        n = _bytes(known.get(name))
        if n is None:
            return None
        sizes[name] = n
    return sizes


def peak_live(nodes, sizes: dict[str, int], first: list[str], last: list[str]) -> int:
    """The largest sum of ``sizes`` of tensors live at once over ``nodes`` in order: ``first`` live from
    the start, ``last`` to the end, any other from its producer to its last reader."""
    end = {t: i for i, node in enumerate(nodes) for t in node.input}
    end.update({t: len(nodes) for t in last})
    live = {t: sizes[t] for t in first if t in sizes}
    peak = current = sum(live.values())
    for i, node in enumerate(nodes):
        for t in node.output:
            if t in sizes and t not in live:
                live[t] = sizes[t]
                current += sizes[t]
        peak = max(peak, current)
        for t in [*node.input, *node.output]:
            if t in live and end.get(t, i) <= i:
                current -= live.pop(t)
    return peak


def _computed_from(nodes, data_inputs: list[str]) -> list[str]:
    """The data inputs and every tensor a node computes from one of them, in graph order."""
    reached = list(data_inputs)
    seen = set(reached)
    for node in nodes:
        if seen.intersection(node.input):
            new = [t for t in node.output if t and t not in seen]
            reached += new
            seen.update(new)
    return reached


def _bytes(value_info) -> int | None:
    """Bytes of a tensor of fully known static shape, else None."""
    if value_info is None or not value_info.type.HasField("tensor_type"):
        return None
    t = value_info.type.tensor_type
    if not t.HasField("shape") or not t.elem_type or any(not d.HasField("dim_value") for d in t.shape.dim):
        return None
    if t.elem_type == TensorProto.STRING:
        return None
    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
    return itemsize * math.prod(d.dim_value for d in t.shape.dim)


def _one_sample(proto: onnx.ModelProto, data_inputs: list[str]) -> onnx.ModelProto:
    """A light copy of ``proto`` for shape inference: the data inputs' first dimension 1, large initializers
    as typed inputs, no value_info (inference recomputes it; a stale batch size would clash)."""
    g = proto.graph
    out = helper.make_model(helper.make_graph([], g.name, [], list(g.output)),
                            opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    out.graph.node.extend(g.node)
    names = set(data_inputs)
    for vi in g.input:
        vi = _copy(vi)
        if vi.name in names and vi.type.tensor_type.shape.dim:
            vi.type.tensor_type.shape.dim[0].Clear()
            vi.type.tensor_type.shape.dim[0].dim_value = 1
        out.graph.input.append(vi)
    declared = {vi.name for vi in g.input}
    for init in g.initializer:
        if math.prod(init.dims) <= SHAPE_ONLY_ABOVE:
            out.graph.initializer.append(init)
        elif init.name not in declared:
            out.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    for o in out.graph.output:  # the batch size the graph declares (if any) must not clash with 1
        if o.type.tensor_type.shape.dim:
            o.type.tensor_type.shape.dim[0].Clear()
    return out


def _copy(value_info):
    c = onnx.ValueInfoProto()
    c.CopyFrom(value_info)
    return c


__all__ = ["SHAPE_ONLY_ABOVE", "activation_bytes", "activation_sizes", "peak_live"]
