"""The device graph pass: float ONNX in, CIM-deployed ONNX out.

Contract: ``run_pass(model, profile) -> (model, PassReport)``. The driver walks the graph in order; the
handler of each node's op family (``handlers.handler_for``) says where its crossbar weight is or why it
cannot be mapped; ``device_plan.compile_plan`` decides mapped or digital; the driver inserts the device
nodes (``device_nodes``) once per mapped weight and records the plan as metadata. Op types without a
family pass through untouched. The input model is never modified.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from nft_deploy.converters.array_nodes import insert_row_tiles, is_tiled
from nft_deploy.converters.device_nodes import (
    DeployedWeight,
    Emitter,
    build_deployed_weight,
    insert_io_quantization,
)
from nft_deploy.converters.handlers import REFUSED, Decline, WeightSite, handler_for, onnx_family, sites
from nft_deploy.converters.report import PassReport, RewrittenNode
from nft_deploy.converters.validate import check_finite_array, check_finite_onnx, check_opset

from nft_deploy.arrays import adc_fixed
from nft_deploy.chips import META_PLAN, META_PROFILE, META_SOURCE_SHA256, META_VERSION
from nft_deploy.device_plan import SHARED_WEIGHT, DevicePlan, FoundWeight, compile_plan, layer_name
from nft_deploy.errors import ExportError
from nft_deploy.profiles import DeviceProfile

FOLDED_FROM = "pkg.onnxscript.optimizer.folded_from"
"""Metadata the dynamo exporter's constant folding leaves on a folded tensor: the names it came from."""


@dataclass(frozen=True)
class PassConfig:
    """Options of the pass that are not device physics."""

    read_seed: int = 0
    """Base seed of the RandomNormalLike read-noise nodes; node i gets ``read_seed + i`` (distinct per node)."""
    source_sha256: str | None = None
    """Hash recorded as ``nft.source_sha256``; None hashes the serialized input model."""
    ranges: dict | None = None
    """Calibrated converter ranges (``nft_deploy.calibration.calibrate``); None: full scale per sample."""


def run_pass(model: onnx.ModelProto, profile: DeviceProfile, config: PassConfig = PassConfig()
             ) -> tuple[onnx.ModelProto, PassReport]:
    """Insert quantization, variation, stuck-at, read-noise and DAC/ADC nodes as the compiled plan says."""
    start = time.perf_counter()
    graph, opset, uses, report = _planned(model, profile)
    if config.ranges:
        report.plan = report.plan.with_ranges(config.ranges)
    rows = {lay.name: lay for lay in report.plan.mapped}
    deployed: dict[str, DeployedWeight] = {}
    for node, pairs in uses:
        mapped = [(rows[f.name], site) for f, site in pairs if site is not None and f.name in rows]
        for lay, site in mapped:
            weight = node.inputs[site.weight_input]
            if weight.name not in deployed:
                if weight.values.dtype != np.float32:
                    raise ExportError(f"node {node.name!r} ({node.op}): weight {weight.name!r} is "
                                      f"{weight.values.dtype}; the pass maps float32 weights only")
                deployed[weight.name] = build_deployed_weight(graph, lay, weight, config.read_seed + len(deployed),
                                                              opset)
                report.inserted_nodes += deployed[weight.name].nodes
            node.inputs[site.weight_input] = deployed[weight.name].tensor
        if not mapped:
            continue
        if onnx_family(node.op).converters:  # once per node: DAC at the first weight reading an activation, ADC
            # on the output (none on a recurrent cell, whose crossbar inputs and outputs are inside the op)
            lay, site = next(((lay, site) for lay, site in mapped if site.data_input is not None), mapped[0])
            em = Emitter(graph, f"nft/io/{node.name or lay.name}")
            tiled, out = is_tiled(lay), node.outputs[0]
            insert_io_quantization(em, node, site.data_input, lay.input_bits, None if tiled else lay.output_bits,
                                   opset, lay.dac_range, adc_fixed(lay, 0, len(out.shape) if out.shape else None,
                                                                  site.weight_input == 0))
            if tiled:  # one node per row tile, an ADC on each partial sum (converters/array_nodes.py)
                insert_row_tiles(em, graph, node, site.weight_input, site.data_input, lay, opset)
            report.inserted_nodes += em.count
        report.rewritten.append(RewrittenNode(node=node.name, op_type=node.op,
                                              layer=",".join(lay.name for lay, _ in mapped)))
    if not report.plan.mapped:
        raise ExportError(_no_layer_message(profile, report))
    out = gs.export_onnx(graph.toposort())
    _copy_model_fields(model, out)
    report.seconds = time.perf_counter() - start
    _write_metadata(out, profile, report, config.source_sha256 or _sha256(model))
    return out, report


def plan_graph(model: onnx.ModelProto, profile: DeviceProfile, name: str = "the model") -> DevicePlan:
    """The device plan the pass would compile for ``model``, without rewriting anything. A layer the pass
    cannot map (a Conv or Gemm whose weight is not a constant) is a digital row with the reason, where
    ``run_pass`` stops with an error."""
    return _planned(model, profile, name, strict=False)[3].plan


def plan_graph_weights(model: onnx.ModelProto, profile: DeviceProfile, name: str = "the model"
                       ) -> tuple[DevicePlan, dict[str, np.ndarray]]:
    """``plan_graph`` and every planned layer's weight as the pass sees it, by the plan's weight name: after
    folding (``Transpose(W)``) and renaming (a folded ``W.T`` is named after its parameter)."""
    graph, _, _, report = _planned(model, profile, name, strict=False)
    tensors = graph.tensors()
    return report.plan, {lay.weight: np.asarray(tensors[lay.weight].values) for lay in report.plan.layers
                         if isinstance(tensors.get(lay.weight), gs.Constant)}


def _planned(model: onnx.ModelProto, profile: DeviceProfile, name: str = "the model", strict: bool = True):
    """The graph ready for rewriting, its opset, every crossbar-op use and a report holding the plan."""
    meta = {p.key for p in model.metadata_props}
    if META_PLAN in meta or "nft.layers" in meta:
        raise ExportError("the model is already CIM-deployed (it has nft.plan metadata); export the float model "
                          "(--no-device) instead")
    opset = check_opset(model, name)
    check_finite_onnx(model, name)
    shaped = model
    if profile.io.input_bits or profile.io.output_bits:  # converters need each activation's rank
        shaped = onnx.shape_inference.infer_shapes(model)
    origins = _folded_from(model)
    graph = gs.import_onnx(shaped)
    _lift_constant_nodes(graph)
    if _needs_folding(graph):
        graph.fold_constants()
    graph.cleanup()  # drops the lifted Constant nodes and what folding left unused
    report = PassReport()
    uses = _find_weights(graph, report, origins)
    for node, pairs in uses:  # weights after folding (Transpose(W), Mul(W, s)...): finite, as the file's are
        for _, site in pairs:
            if site is not None:
                w = node.inputs[site.weight_input]
                check_finite_array(w.values, f"{name}: weight {w.name!r} of node {node.name!r} ({node.op})")
    report.plan = compile_plan(list({id(f): f for _, pairs in uses for f, _ in pairs}.values()), profile,
                               strict=strict)
    return graph, opset, uses, report


def _folded_from(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Tensor name -> the names the exporter folded it from (onnxscript's ``folded_from`` metadata)."""
    entries = [*model.graph.value_info, *model.graph.initializer]
    return {e.name: [n.strip(" '\"") for n in p.value.strip("[]").split(",")]
            for e in entries for p in e.metadata_props if p.key == FOLDED_FROM}


def _find_weights(graph: gs.Graph, report: PassReport, origins: dict[str, list[str]] | None = None
                  ) -> list[tuple[gs.Node, list[tuple[FoundWeight, WeightSite | None]]]]:
    """Every node of a registered op family with its weights, each as the plan's ``FoundWeight`` (one
    object per weight, however many nodes share it) and its site (None where the node is declined); op
    types without a family are counted as passed through. A folded weight that its family traces to one
    torch parameter (``OpFamily.weight_origin``) is renamed after it; a second folded copy of the same
    parameter (one ``Linear`` called twice on 3-D inputs) is replaced by the first, so the two calls read one
    programmed weight, as in torch. A weight several nodes read lists them all (``FoundWeight.nodes``)."""
    uses, seen, names, renamed, readers = [], {}, None, {}, {}
    for node in graph.nodes:
        handler = handler_for(node.op)
        if handler is None:
            if node.op in REFUSED:
                raise ExportError(f"node {node.name!r}: op type {node.op} carries weights the device pass cannot "
                                  f"map ({REFUSED[node.op]})")
            report.passthrough[node.op] = report.passthrough.get(node.op, 0) + 1
            continue
        answer = handler(node)
        if isinstance(answer, Decline):
            const = next((t for t in node.inputs[:2] if isinstance(t, gs.Constant)), None)
            guess = const or (node.inputs[1] if len(node.inputs) > 1 else None)
            name = layer_name(guess.name) if guess is not None else node.name
            found = FoundWeight(name, node.op, const.name if const is not None else None,
                                tuple(int(d) for d in const.shape) if const is not None else (), decline=answer,
                                node=node.name)
            uses.append((node, [(found, None)]))
            continue
        pairs, origin = [], onnx_family(node.op).weight_origin
        for site in sites(answer):
            w = node.inputs[site.weight_input]
            name = origin(origins.get(w.name, [])) if origin and origins else None
            twin = renamed.get(name)
            if (twin is not None and twin.shape == w.shape and twin.values.dtype == w.values.dtype
                    and np.array_equal(twin.values, w.values)):
                node.inputs[site.weight_input] = w = twin
            elif name and name != w.name and name not in (names := names or set(graph.tensors())):
                names.add(name)
                w.name = name
                renamed[name] = w
            shared = any(handler_for(user.op) is None for user in w.outputs)
            found = seen.setdefault(w.name, FoundWeight(layer_name(w.name), node.op, w.name,
                                                        tuple(int(d) for d in w.shape), site.out_axis, node=node.name,
                                                        decline=SHARED_WEIGHT if shared else None,
                                                        groups=int(node.attrs.get("group", 1))))
            pairs.append((found, None if shared else site))
            readers.setdefault(id(found), []).append(node.name)
        uses.append((node, pairs))
    several = {key: replace(f, nodes=tuple(readers[key])) for f in seen.values()
               if len(readers.get(key := id(f), ())) > 1}
    return [(node, [(several.get(id(f), f), s) for f, s in pairs]) for node, pairs in uses] if several else uses


def _lift_constant_nodes(graph: gs.Graph) -> None:
    """``Constant`` nodes become initializers (same tensor name), so handlers see one kind of constant."""
    kinds = {"value": None, "value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
             "value_ints": np.int64}
    for node in graph.nodes:
        key = next((k for k in kinds if k in node.attrs), None)
        if node.op == "Constant" and key and len(node.outputs) == 1:
            out, v = node.outputs[0], node.attrs[key]
            const = gs.Constant(out.name, np.asarray(v.values) if key == "value" else np.asarray(v, kinds[key]))
            for consumer in list(out.outputs):
                for i, t in enumerate(consumer.inputs):
                    if t is out:
                        consumer.inputs[i] = const
            node.outputs.clear()  # now unused: the caller's ``graph.cleanup()`` drops the node


def _needs_folding(graph: gs.Graph) -> bool:
    """True when a mappable node's weight is computed from constants only (e.g. Transpose(W))."""
    for node in graph.nodes:
        if handler_for(node.op) and len(node.inputs) > 1 and isinstance(node.inputs[1], gs.Variable):
            prod = node.inputs[1].inputs
            if prod and all(isinstance(t, gs.Constant) for t in prod[0].inputs):
                return True
    return False


def _copy_model_fields(src: onnx.ModelProto, dst: onnx.ModelProto) -> None:
    dst.ir_version = max(src.ir_version, dst.ir_version) if src.ir_version else dst.ir_version
    dst.producer_name, dst.producer_version = src.producer_name, src.producer_version
    dst.doc_string = src.doc_string
    del dst.metadata_props[:]
    dst.metadata_props.extend(src.metadata_props)


def _write_metadata(model: onnx.ModelProto, profile: DeviceProfile, report: PassReport, sha: str) -> None:
    from nft_deploy import __version__

    entries = {META_PROFILE: profile.to_json(), META_VERSION: __version__, META_SOURCE_SHA256: sha,
               **report.metadata()}
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **entries})


def _sha256(model: onnx.ModelProto) -> str:
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def _no_layer_message(profile: DeviceProfile, report: PassReport) -> str:
    ops = ", ".join(profile.mapping.op_types) or "none"
    why = Counter(f"{s.op_type} ({s.reason})" for s in report.skipped)
    seen = f"; skipped: {', '.join(f'{n} {k}' for k, n in why.items())}" if why else ""
    return (f"profile {profile.name!r}: no mappable layer in the model: no node of mapping.op_types [{ops}] "
            f"with a constant weight outside mapping.digital_layers{seen}")
