"""The device graph pass: float ONNX in, CIM-deployed ONNX out.

Contract: ``run_pass(model, profile) -> (model, PassReport)``. The driver walks the graph in order; a
registered handler (``handlers.HANDLERS``) says where a node's crossbar weight is or why it cannot be
mapped; the driver inserts the device nodes (``device_nodes``) once per weight and records metadata.
Op types without a handler pass through untouched. The input model is never modified.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from nft_deploy.converters.device_nodes import (
    DeployedWeight,
    Emitter,
    build_deployed_weight,
    insert_io_quantization,
)
from nft_deploy.converters.handlers import HANDLERS, REFUSED, Decline, WeightSite
from nft_deploy.converters.report import PassReport, RewrittenNode, SkippedNode

from nft_deploy.chips import META_LAYERS, META_PROFILE, META_SOURCE_SHA256, META_VERSION, DeployedLayer
from nft_deploy.errors import ExportError
from nft_deploy.noise import NoiseModel
from nft_deploy.profiles import DeviceProfile


@dataclass(frozen=True)
class PassConfig:
    """Options of the pass that are not device physics."""

    read_seed: int = 0
    """Base seed of the RandomNormalLike read-noise nodes; node i gets ``read_seed + i`` (distinct per node)."""
    source_sha256: str | None = None
    """Hash recorded as ``nft.source_sha256``; None hashes the serialized input model."""


def layer_name(weight_name: str) -> str:
    """Layer name = weight initializer name without a trailing ``.weight`` (= the torch module path)."""
    return weight_name[: -len(".weight")] if weight_name.endswith(".weight") else weight_name


def run_pass(model: onnx.ModelProto, profile: DeviceProfile, config: PassConfig = PassConfig()
             ) -> tuple[onnx.ModelProto, PassReport]:
    """Insert quantization, variation, stuck-at, read-noise and DAC/ADC nodes for ``profile``."""
    start = time.perf_counter()
    if any(p.key == META_LAYERS for p in model.metadata_props):
        raise ExportError("the model is already CIM-deployed (it has nft.layers metadata); export the float model "
                          "(--no-device) instead")
    graph = gs.import_onnx(model)
    opset = _default_opset(model)
    _lift_constant_nodes(graph)
    if _needs_folding(graph):
        graph.fold_constants()
        graph.nodes = [n for n in graph.nodes if n.outputs]  # folded nodes lose their outputs
    report = PassReport()
    deployed: dict[str, DeployedWeight] = {}
    for node in list(graph.nodes):
        site = _site(node, profile, report)
        if site is None:
            continue
        weight = node.inputs[site.weight_input]
        layer = layer_name(weight.name)
        if weight.name not in deployed:
            if weight.values.dtype != np.float32:
                raise ExportError(f"node {node.name!r} ({node.op}): weight {weight.name!r} is "
                                  f"{weight.values.dtype}; the pass maps float32 weights only")
            nm = NoiseModel.for_layer(profile, layer)
            dw = build_deployed_weight(graph, layer, weight, site.out_axis, nm,
                                       config.read_seed + len(report.layers), opset)
            deployed[weight.name] = dw
            report.layers.append(DeployedLayer(name=layer, weight=weight.name, op_type=node.op,
                                               shape=tuple(int(d) for d in weight.shape), out_axis=site.out_axis,
                                               chip_input=dw.chip_input, stuck_input=dw.stuck_input))
            report.inserted_nodes += dw.nodes
        node.inputs[site.weight_input] = deployed[weight.name].tensor
        em = Emitter(graph, f"nft/io/{node.name or layer}")
        insert_io_quantization(em, node, site.data_input, profile.io.input_bits, profile.io.output_bits)
        report.inserted_nodes += em.count
        report.rewritten.append(RewrittenNode(node=node.name, op_type=node.op, layer=layer))
    if not report.layers:
        raise ExportError(_no_layer_message(profile, report))
    graph.toposort()
    out = gs.export_onnx(graph)
    _copy_model_fields(model, out)
    report.seconds = time.perf_counter() - start
    _write_metadata(out, profile, report, config.source_sha256 or _sha256(model))
    return out, report


def _site(node: gs.Node, profile: DeviceProfile, report: PassReport) -> WeightSite | None:
    """The node's weight site, or None after recording why it is skipped / passed through."""
    handler = HANDLERS.get(node.op)
    if handler is None:
        if node.op in REFUSED:
            raise ExportError(f"node {node.name!r}: op type {node.op} carries weights the device pass cannot "
                              f"map ({REFUSED[node.op]})")
        report.passthrough[node.op] = report.passthrough.get(node.op, 0) + 1
        return None
    if node.op not in profile.mapping.op_types:
        report.skipped.append(SkippedNode(node.name, node.op, "op type not in mapping.op_types"))
        return None
    site = handler(node)
    if isinstance(site, Decline):
        guess = _guess_layer(node)
        if guess is not None and profile.is_digital(guess):
            report.skipped.append(SkippedNode(node.name, node.op, "digital layer"))
            return None
        if site.fatal:
            hint = f' or keep it digital: mapping.digital_layers ["{guess}"]' if guess else ""
            raise ExportError(f"node {node.name!r} ({node.op}): {site.reason}; the device pass cannot map it. "
                              f"Remove {node.op} from the profile's mapping.op_types{hint}")
        report.skipped.append(SkippedNode(node.name, node.op, site.reason))
        return None
    if profile.is_digital(layer_name(node.inputs[site.weight_input].name)):
        report.skipped.append(SkippedNode(node.name, node.op, "digital layer"))
        return None
    return site


def _guess_layer(node: gs.Node) -> str | None:
    """Layer name of a declined node's weight-like input (input 1), for digital globs and hints."""
    return layer_name(node.inputs[1].name) if len(node.inputs) > 1 else None


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
            node.outputs.clear()
    graph.nodes = [n for n in graph.nodes if n.op != "Constant" or n.outputs]


def _needs_folding(graph: gs.Graph) -> bool:
    """True when a mappable node's weight is computed from constants only (e.g. Transpose(W))."""
    for node in graph.nodes:
        if node.op in HANDLERS and len(node.inputs) > 1 and isinstance(node.inputs[1], gs.Variable):
            prod = node.inputs[1].inputs
            if prod and all(isinstance(t, gs.Constant) for t in prod[0].inputs):
                return True
    return False


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


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
