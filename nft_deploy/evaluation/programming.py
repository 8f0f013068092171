"""Programming a chip layer by layer: the deployed graph cut where a chip's weights become fixed.

The graph pass writes each mapped weight's device maths into the graph (quantize, programming variation,
stuck-at faults, then read noise on every inference). Everything upstream of the read noise depends only
on the float weight and the chip's draws (``nft.chip/*``, ``nft.stuck/*``): it is what ONNX Runtime would
fold into constants for a chip. ``split_graph`` cuts the graph there into

- one small *program* per programmed weight (inputs: the float weight and the layer's chip inputs;
  output: the weight as programmed), run in ONNX Runtime one layer at a time, so a chip never holds more
  than one layer's draws and temporaries; and
- the *inference* graph, which reads the programmed weights as initializers (``fold``: a session per chip,
  ONNX Runtime pre-packs them) or as graph inputs (``feed``: one session for all chips).

The mapped float weights and the programmed weights reach ONNX Runtime as external initializers (its
``add_external_initializers``): memory the evaluator owns, not copied into the session. The nodes are the
graph's own, run by the same kernels, so a chip's numbers are those of the whole graph folded at once
(``tests/evaluation/test_programming.py``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from nft_deploy.chips import chip_feeds, draw_chip, time_feed
from nft_deploy.device_plan import TIME_INPUT, LayerPlan
from nft_deploy.evaluation.deployed import RANDOM_OPS, clean_proto
from nft_deploy.evaluation.sessions import TRIM_ABOVE, make_session, trim_heap
from nft_deploy.noise import ChipDraw

EXTERNAL = "nft-deploy-memory"
"""Location named by external-initializer placeholders (ONNX Runtime is handed the arrays; no file)."""


@dataclass(frozen=True)
class Program:
    """The subgraph that turns one float weight and its chip inputs into the weight as programmed."""

    output: str
    weights: tuple[str, ...]
    chip_inputs: tuple[str, ...]
    model: bytes


@dataclass(frozen=True)
class SplitGraph:
    """A deployed graph cut into programs and the inference graph (small: no weight data inside)."""

    programs: tuple[Program, ...]
    inference: bytes
    """The graph after the cut; programmed weights and mapped weights are read by name, not stored."""
    weights_read: tuple[str, ...]
    """Mapped weights the inference graph still reads (the shape of a read-noise draw, say)."""
    read_keys: tuple[tuple[int, int], ...]
    """(node index in ``inference``, seed key) of each random node; the key names the node's place in the
    deployed graph, so a chip's read noise does not depend on the cut."""

    @property
    def programmed(self) -> tuple[str, ...]:
        return tuple(p.output for p in self.programs)


def split_graph(proto: onnx.ModelProto, chip_inputs: list[str], weights: Mapping[str, np.ndarray]) -> SplitGraph:
    """Cut ``proto`` (a deployed model) where every mapped weight in ``weights`` has been programmed."""
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    fixed = set(inits) | set(chip_inputs) | {""}  # known once a chip is programmed
    fixed_nodes: list[int] = []
    for i, node in enumerate(g.node):
        if node.op_type not in RANDOM_OPS and all(x in fixed for x in node.input):
            fixed.update(node.output)
            fixed_nodes.append(i)
    producer = {o: i for i, node in enumerate(g.node) for o in node.output}
    fixed_set = set(fixed_nodes)
    read_later = {x for i, node in enumerate(g.node) if i not in fixed_set for x in node.input}
    read_later |= {o.name for o in g.output}
    programs = []
    for i in fixed_nodes:
        for out in g.node[i].output:
            if out not in read_later:
                continue
            nodes = _ancestors(g, producer, out)
            leaves = {x for n in nodes for x in g.node[n].input}
            if not leaves & set(weights):
                continue  # shape arithmetic and the like: ONNX Runtime folds it in the inference graph
            programs.append(_program(proto, nodes, out, leaves, inits, chip_inputs, weights))
    inference, kept = _inference(proto, {p.output for p in programs}, producer, set(weights))
    read_keys = tuple((new, zlib.crc32(f"{old}/{g.node[old].name}".encode()))
                      for new, old in enumerate(kept) if g.node[old].op_type in RANDOM_OPS)
    read = {x for n in inference.graph.node for x in n.input}
    return SplitGraph(tuple(programs), inference.SerializeToString(),
                      tuple(w for w in weights if w in read), read_keys)


def _just_in_time(g: onnx.GraphProto, nodes: list[int], producer: dict[str, int]) -> list[int]:
    """``nodes`` in an order that computes each input right before its first use (a depth-first post-order
    from the outputs): ONNX Runtime runs nodes in graph order, so a layer's read-noise draw, which depends
    on no data, lives next to its layer instead of every layer's draw living at once."""
    wanted, order, done = set(nodes), [], set()
    stack = [(producer[o.name], False) for o in reversed(g.output) if o.name in producer]
    while stack:
        i, expanded = stack.pop()
        if i in done:
            continue
        if expanded:
            done.add(i)
            order.append(i)
            continue
        stack.append((i, True))
        stack.extend((producer[x], False) for x in reversed(g.node[i].input)
                     if x in producer and producer[x] in wanted and producer[x] not in done)
    return order


def _ancestors(g: onnx.GraphProto, producer: dict[str, int], out: str) -> list[int]:
    seen, stack = set(), [out]
    while stack:
        i = producer.get(stack.pop())
        if i is not None and i not in seen:
            seen.add(i)
            stack.extend(g.node[i].input)
    return sorted(seen)


def _program(proto, nodes, out, leaves, inits, chip_inputs, weights) -> Program:
    g = proto.graph
    ws = tuple(sorted(leaves & set(weights)))
    chips = tuple(sorted(leaves & set(chip_inputs)))
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(weights[n].dtype), weights[n].shape)
              for n in ws]
    inputs += [vi for vi in g.input if vi.name in chips]
    small = [inits[n] for n in sorted(leaves) if n in inits and n not in weights]
    graph = helper.make_graph([g.node[i] for i in nodes], "nft.program", inputs,
                              [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)], small)
    model = helper.make_model(graph, opset_imports=proto.opset_import, ir_version=proto.ir_version)
    return Program(out, ws, chips, model.SerializeToString())


def _inference(proto: onnx.ModelProto, programmed: set[str], producer: dict[str, int], weights: set[str]):
    """The graph without the programs' nodes and without mapped weight data; (model, kept node indices)."""
    g = proto.graph
    needed, stack = set(), [o.name for o in g.output]
    while stack:
        name = stack.pop()
        if name in needed or name in programmed:
            continue
        needed.add(name)
        if name in producer:
            stack.extend(g.node[producer[name]].input)
    kept = _just_in_time(g, [i for i, node in enumerate(g.node) if any(o in needed for o in node.output)], producer)
    read = {x for i in kept for x in g.node[i].input} | {o.name for o in g.output}
    graph = helper.make_graph([g.node[i] for i in kept], g.name, [vi for vi in g.input if vi.name in read],
                              list(g.output), [i for i in g.initializer if i.name in read and i.name not in weights])
    graph.value_info.extend(g.value_info)
    return helper.make_model(graph, opset_imports=proto.opset_import, ir_version=proto.ir_version), kept


# ---------------------------------------------------------------- running it


class Programmer:
    """Programs chips of one split graph in this process, one layer at a time.

    A drifting graph's programs that read ``nft.time`` are rerun for every time a chip is read at; the others,
    and the drifting layers' draws, are kept for the chip being read (one chip's worth, whatever the times)."""

    def __init__(self, split: SplitGraph, layers: list[LayerPlan], weights: Mapping[str, np.ndarray]):
        self.split, self.weights = split, weights
        by_input = {n: lay for lay in layers for n in (lay.chip_input, lay.stuck_input, lay.drift_input) if n}
        self.layers = [list({by_input[n].name: by_input[n] for n in p.chip_inputs if n in by_input}.values())
                       for p in split.programs]
        self.timed = [TIME_INPUT in p.chip_inputs for p in split.programs]
        self.sessions = [make_session(p.model, 1, optimize=False, arena=False) for p in split.programs]
        self.trims = sum(w.nbytes for w in weights.values()) >= TRIM_ABOVE
        self._chip: tuple | None = None
        self._kept: dict[str, np.ndarray] = {}
        self._draws: dict[str, ChipDraw] = {}

    def program(self, seed: int, chip: int | None, sigma_factors: Mapping[str, float] | None = None,
                seconds: float | None = None) -> dict[str, np.ndarray]:
        """Programmed weight by name for chip ``chip`` of a run seeded ``seed`` (None: the ideal chip, draws 0),
        read ``seconds`` after programming (a drifting graph; None: at t0, before any drift)."""
        key = (seed, chip, tuple(sorted((sigma_factors or {}).items())))
        if key != self._chip:
            self._chip, self._kept, self._draws = key, {}, {}
        out = {}
        for prog, layers, session, timed in zip(self.split.programs, self.layers, self.sessions, self.timed,
                                                strict=True):
            if prog.output in self._kept:
                out[prog.output] = self._kept[prog.output]
                continue
            wanted = set(prog.weights) | set(prog.chip_inputs)
            feeds = chip_feeds(layers, self._layer_draws(layers, seed, chip), sigma_factors) | time_feed(seconds or 0.0)
            feeds = {n: a for n, a in feeds.items() if n in wanted} | {w: self.weights[w] for w in prog.weights}
            out[prog.output] = session.run([prog.output], feeds)[0]
            if any(self.timed) and not timed:
                self._kept[prog.output] = out[prog.output]
            del feeds
        if self.trims:
            trim_heap()
        return out

    def _layer_draws(self, layers: list[LayerPlan], seed: int, chip: int | None) -> dict[str, ChipDraw]:
        if chip is None:
            return {lay.name: ChipDraw(np.zeros(lay.shape, np.float32)) for lay in layers}
        missing = [lay for lay in layers if lay.name not in self._draws]
        draws = {lay.name: self._draws[lay.name] for lay in layers if lay.name in self._draws}
        draws |= draw_chip(missing, self.weights, seed, chip) if missing else {}
        self._draws.update({lay.name: draws[lay.name] for lay in layers if lay.drift_input})
        return draws


def external_placeholder(name: str, array: np.ndarray) -> onnx.TensorProto:
    """An initializer whose data ONNX Runtime is handed at session creation (``add_external_initializers``)."""
    t = onnx.TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape,
                         data_location=onnx.TensorProto.EXTERNAL)
    t.external_data.add(key="location", value=EXTERNAL)
    return t


class InferenceGraph:
    """The inference graph of a split, run for one chip at a time.

    ``fold`` (fast): the programmed weights become initializers of a session per chip (ONNX Runtime copies
    and pre-packs them, and keeps its memory arena: fastest for convolutions, about twice the memory).
    ``feed`` (lean): they are fed as graph inputs, which ONNX Runtime reads in place, and no arena keeps a
    run's tensors; one session serves every chip unless the graph draws read noise, whose seeds are set per
    chip. The float weights the graph still reads (the shape of a read-noise draw) are always fed.
    """

    def __init__(self, split: SplitGraph, weights: Mapping[str, np.ndarray], clean: bool = False):
        self.split = split
        self.proto = onnx.ModelProto()
        self.proto.ParseFromString(split.inference)
        if clean:
            self.proto = clean_proto(self.proto)
        self.weights = {w: weights[w] for w in split.weights_read}
        self.proto.graph.input.extend(helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                                      for n, a in self.weights.items())
        self.reseeds = bool(split.read_keys) and not clean
        self.trims = sum(w.nbytes for w in weights.values()) >= TRIM_ABOVE
        self._folds: bool | None = None
        self._session: ort.InferenceSession | None = None

    def session(self, programmed: Mapping[str, np.ndarray], read_seed: np.random.SeedSequence | None,
                threads: int, fold: bool) -> tuple[ort.InferenceSession, dict[str, np.ndarray]]:
        """(session, extra feeds) for the chip whose weights are ``programmed`` and read noise ``read_seed``."""
        if self._folds is None:
            self._folds = fold
            if fold:
                self.proto.graph.initializer.extend(external_placeholder(n, a) for n, a in programmed.items())
            else:
                self.proto.graph.input.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                                              for n in programmed)
        if self._folds != fold:
            raise ValueError("an InferenceGraph either folds or feeds its programmed weights")
        feeds = dict(self.weights) if fold else {**self.weights, **programmed}
        if fold or self.reseeds or self._session is None:
            if self.reseeds and read_seed is not None:
                for index, key in self.split.read_keys:
                    seq = np.random.SeedSequence(read_seed.entropy, spawn_key=(*read_seed.spawn_key, key))
                    _set_float_attr(self.proto.graph.node[index], "seed", float(seq.generate_state(1)[0] % 2**24))
            self._session = None  # the last chip's session goes before this one is built
            if self.trims:
                trim_heap()
            self._session = make_session(self.proto.SerializeToString(), threads, programmed if fold else None,
                                         arena=fold)  # feed: the lean way, nothing kept between runs
        return self._session, feeds


def _set_float_attr(node: onnx.NodeProto, name: str, value: float) -> None:
    for a in node.attribute:
        if a.name == name:
            a.f = value
            return
    node.attribute.append(helper.make_attribute(name, float(value)))


__all__ = ["InferenceGraph", "Program", "Programmer", "SplitGraph", "external_placeholder", "split_graph"]
