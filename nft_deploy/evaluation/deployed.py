"""A CIM-deployed ONNX model as the evaluator sees it: graph, chip inputs, profile, I/O shapes.

Accepts a deployed ``.onnx`` (metadata ``nft.plan``, the compiled device plan), a float ``.onnx`` plus a
profile (deployed on the fly by ``nft_deploy.export.insert_device_nodes``) or a checkpoint (exported by
``nft_deploy.export.export_model``, exactly as ``nft-deploy export`` would, with its stored profile unless
one is given). Also builds the clean variant of a graph (read noise off); how a chip is programmed onto
the graph is ``programming``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from nft_deploy.chips import META_PLAN
from nft_deploy.device_plan import DevicePlan, LayerPlan
from nft_deploy.errors import EvaluationError
from nft_deploy.profiles import DeviceProfile, load_profile

RANDOM_OPS = ("RandomNormalLike", "RandomNormal", "RandomUniformLike", "RandomUniform")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class GraphTensor:
    """A graph input or output as the evaluator sees it."""

    name: str
    shape: tuple[int | None, ...] | None
    """Shape of one sample (the batch axis dropped; None for symbolic dims); None: the graph declares none."""
    dtype: str
    """Element type the graph declares (numpy name: float32, int64, bool...)."""

    def text(self) -> str:
        """``name (N, 10) float32``, as error messages list it."""
        dims = "" if self.shape is None else f" ({', '.join(['N', *('?' if d is None else str(d) for d in self.shape)])})"
        return f"{self.name}{dims} {self.dtype}"


@dataclass
class DeployedModel:
    """A deployed graph with everything needed to program chips onto it."""

    name: str
    """What reports call the model (the path as given)."""
    proto: onnx.ModelProto
    plan: DevicePlan
    """The device plan the graph pass compiled (metadata ``nft.plan``), at the exported sigma."""
    inputs: tuple[GraphTensor, ...]
    """The data inputs, in graph order (chip inputs and initializers left out)."""
    outputs: tuple[GraphTensor, ...]
    output_name: str
    """The output read as logits (``with_output``; default the first)."""
    num_classes: int | None
    """Static size of that output's last dim, or None when symbolic."""
    weights: dict[str, np.ndarray]
    """Initializers of the mapped weights (stuck-at draws need them)."""

    @property
    def input_name(self) -> str:
        """The first data input's name (the only one of most models)."""
        return self.inputs[0].name

    @property
    def input_shape(self) -> tuple[int | None, ...] | None:
        """Shape of one sample of the first data input (None for symbolic dims)."""
        return self.inputs[0].shape

    def with_output(self, name: str | None) -> DeployedModel:
        """This model reading its logits from output ``name`` (``--output``; None: the first output), which
        must be (N, C): one row of class scores per sample. EvaluationError listing the outputs otherwise."""
        listing = ", ".join(o.text() for o in self.outputs)
        chosen = [o for o in self.outputs if o.name == (name if name is not None else self.outputs[0].name)]
        if not chosen:
            raise EvaluationError(f"--output {name}: {self.name} has no output {name!r}; its outputs: {listing}")
        out = chosen[0]
        if out.shape is not None and len(out.shape) != 1:
            flag = "--output" if name is not None else "--output (default: the first output)"
            raise EvaluationError(f"{flag}: {self.name} output {out.text()} is not (N, C) logits, one row of class "
                                  f"scores per sample; pick one with --output NAME: {listing}")
        if out.name == self.output_name:
            return self
        other = replace(self, output_name=out.name, num_classes=out.shape[-1] if out.shape else None)
        if "split" in self.__dict__:  # the cut does not depend on the output read
            other.__dict__["split"] = self.__dict__["split"]
        return other

    @property
    def layers(self) -> list[LayerPlan]:
        """The crossbar-mapped layers of the plan, in graph order."""
        return self.plan.mapped

    @property
    def profile(self) -> DeviceProfile:
        return self.plan.profile

    @property
    def chip_inputs(self) -> list[str]:
        return self.plan.chip_inputs

    @property
    def has_read_noise(self) -> bool:
        return any(n.op_type in RANDOM_OPS for n in self.proto.graph.node)

    @cached_property
    def split(self):
        """The graph cut where chips are programmed (``programming.split_graph``), computed once."""
        from nft_deploy.evaluation.programming import split_graph

        return split_graph(self.proto, self.chip_inputs, self.weights)

    @cached_property
    def activation_bytes(self) -> int | None:
        """Peak bytes of live activations for one sample (``activations.activation_bytes``), None if unknown."""
        from nft_deploy.evaluation.activations import activation_bytes

        return activation_bytes(self.proto, [i.name for i in self.inputs])

    @property
    def prefers_fold(self) -> bool:
        """True when a mapped layer's op family runs faster with chips folded into constants (convolutions)."""
        from nft_deploy.converters.handlers import onnx_family

        return any(getattr(onnx_family(lay.op), "fold_chips", False) for lay in self.layers)


def load_deployed(source: str | Path | onnx.ModelProto | DeployedModel,
                  profile: str | Path | DeviceProfile | None = None) -> DeployedModel:
    """Load (and if needed deploy) a model for Monte Carlo evaluation."""
    if isinstance(source, DeployedModel):
        return source
    if isinstance(source, onnx.ModelProto):
        return _from_proto(source, "<model>", profile)
    path = Path(source)
    if not path.is_file():
        raise EvaluationError(f"{path}: no such model file")
    if path.suffix in CHECKPOINT_SUFFIXES:
        return _from_checkpoint(path, profile)
    if path.stat().st_size == 0:
        raise EvaluationError(f"{path}: not an ONNX model (empty file)")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError and friends; all mean "not ONNX"
        raise EvaluationError(f"{path}: not an ONNX model, or a truncated or corrupt one (expected a .onnx file or a "
                              f"checkpoint {'/'.join(CHECKPOINT_SUFFIXES)}; {type(e).__name__})") from None
    if not proto.graph.node:
        raise EvaluationError(f"{path}: not an ONNX model (no graph nodes)")
    return _from_proto(proto, str(path), profile)


def _from_proto(proto: onnx.ModelProto, name: str, profile, checked: bool = False) -> DeployedModel:
    """``checked``: the model is our own pass's output (``validate.check_onnx`` already ran on its input)."""
    if not checked:
        from nft_deploy.converters.validate import check_onnx

        check_onnx(proto, name, EvaluationError)
    meta = {p.key: p.value for p in proto.metadata_props}
    if "nft.layers" in meta and META_PLAN not in meta:
        raise EvaluationError(f"{name}: deployed by an nft-deploy older than the device plan (no {META_PLAN} "
                              "metadata); re-export it with `nft-deploy export`")
    if META_PLAN in meta:
        plan = _meta_plan(meta, name)
        if profile is not None:
            raise EvaluationError(f"{name}: --profile: the model is already deployed (profile "
                                  f"{plan.profile.name!r}); --profile applies only to float models "
                                  "and checkpoints; use --sigma to change programming variation")
        return _describe(proto, name, plan)
    if profile is None:
        raise EvaluationError(f"{name}: not a CIM-deployed model (no {META_PLAN} metadata); pass --profile "
                              "NAME to deploy it on the fly, or export it with `nft-deploy export`")
    deployed, _report = _insert_device_nodes(proto, load_profile(profile))
    return _from_proto(deployed, name, None, checked=True)


def _from_checkpoint(path: Path, profile) -> DeployedModel:
    import tempfile

    from nft_deploy.converters.loaders import LoadedSource, source_profile
    from nft_deploy.export import export_model

    profile = source_profile(LoadedSource("checkpoint", "", path=path), profile)
    if profile is None:
        raise EvaluationError(f"{path}: the checkpoint stores no device profile; pass --profile NAME")
    with tempfile.TemporaryDirectory() as tmp:  # export_model writes a file; keep it out of the user's folder
        result = export_model(str(path), profile=profile, output=Path(tmp) / "model.cim.onnx")
    return _from_proto(result.model, str(path), None, checked=True)


def _insert_device_nodes(proto: onnx.ModelProto, profile: DeviceProfile):
    from nft_deploy.export import insert_device_nodes

    return insert_device_nodes(proto, profile)


def _meta_plan(meta: dict[str, str], name: str) -> DevicePlan:
    try:
        return DevicePlan.from_json(meta[META_PLAN], f"{name}:{META_PLAN}")
    except (ValueError, KeyError, TypeError) as e:
        raise EvaluationError(f"{name}: metadata {META_PLAN} is not a valid device plan ({e}); re-export the "
                              "model") from None


def _describe(proto: onnx.ModelProto, name: str, plan: DevicePlan):
    g = proto.graph
    layers = plan.mapped
    inits = {i.name for i in g.initializer}
    chip_names = set(plan.chip_inputs)
    data_inputs = [i for i in g.input if i.name not in inits and i.name not in chip_names]
    missing = chip_names - {i.name for i in g.input}
    if missing:
        raise EvaluationError(f"{name}: {META_PLAN} names graph input {sorted(missing)[0]!r}, which the graph "
                              "does not have; re-export the model")
    if not data_inputs or len(g.output) < 1:
        raise EvaluationError(f"{name}: expected at least one data input and one output, found inputs "
                              f"{[i.name for i in data_inputs]} and {len(g.output)} outputs")
    wanted = {lay.weight for lay in layers}
    weights = {i.name: numpy_helper.to_array(i) for i in g.initializer if i.name in wanted}
    outputs = tuple(_tensor(o) for o in g.output)
    first = outputs[0].shape
    return DeployedModel(name=name, proto=proto, plan=plan, inputs=tuple(_tensor(i) for i in data_inputs),
                         outputs=outputs, output_name=outputs[0].name,
                         num_classes=first[-1] if first else None, weights=weights)


def _tensor(value_info) -> GraphTensor:
    t = value_info.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type) if t.elem_type else np.dtype(np.float32)
    shape = (tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)[1:]
             if t.HasField("shape") else None)
    return GraphTensor(value_info.name, shape, np.dtype(dtype).name)


# ---------------------------------------------------------------- graph variants


def clean_proto(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with read noise off: every random node replaced by zeros of its shape.

    (A zero ``scale`` is not an option: ONNX Runtime asserts that a normal's std is positive.)
    """
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    nodes = []
    for node in out.graph.node:
        if node.op_type in RANDOM_OPS and node.op_type.endswith("Like"):
            node = onnx.helper.make_node("Sub", [node.input[0], node.input[0]], list(node.output), name=node.name)
        elif node.op_type in RANDOM_OPS:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            zeros = np.zeros(attrs["shape"], onnx.helper.tensor_dtype_to_np_dtype(attrs.get("dtype", 1)))
            node = onnx.helper.make_node("Constant", [], list(node.output), name=node.name,
                                         value=numpy_helper.from_array(zeros))
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out
