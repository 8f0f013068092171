"""What an op family answers about one use of a weight: where its crossbar weight is, or why it is not
mapped. The same answer is given for an ONNX node (``WeightSite``) and for a torch call (``TorchSite``),
so both engines see the same layers.

Handlers only describe; ``device_plan.compile_plan`` decides mapped or digital, and the driver
(``graph_pass``) inserts the nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WeightSite:
    """A node whose weight is a constant the device stores."""

    weight_input: int
    """Index of the weight among the node's inputs."""
    out_axis: int
    """Output-channel axis of the weight as stored (per-channel scale, stuck-at digits)."""
    data_input: int | None
    """Index of the activation input (where an input DAC goes); None when the op reads this weight
    against an internal state (a recurrent weight), where no DAC can sit."""


@dataclass(frozen=True)
class Decline:
    """A use of a mappable op that cannot be mapped."""

    reason: str
    """Short reason, shown in the plan and the report, e.g. ``weight not constant``."""
    fatal: bool = False
    """True when leaving the node digital would silently misrepresent the device (a Conv whose weight
    cannot be programmed): the pass stops unless the layer is kept digital by the profile."""


@dataclass(frozen=True)
class TorchSite:
    """A torch call whose weight argument is a crossbar weight candidate."""

    op: str
    """The ONNX op type the call exports to (``linear`` with a 2-D input is Gemm, otherwise MatMul)."""
    weight_arg: int | tuple[int, int]
    """Position of the weight among the call's arguments, or (argument, index) for a weight inside a list
    argument (``torch.lstm`` takes all its weights as one flat list)."""
    data_arg: int | None
    """Position of the activation (where an input DAC goes); None: no DAC for this weight."""
    out_axis: int
    """Output-channel axis of the weight as stored."""
    decline: Decline | None = None
    """Set when the weight cannot be mapped (for example a 3-D matmul operand)."""
    shape: tuple[int, ...] | None = None
    """The weight's shape as the ONNX graph stores it, where it differs from the parameter's (``layout``, or
    the family's, maps one onto the other); None: the parameter's shape."""
    bias_arg: int | None = None
    """Position of the call's bias argument (``linear``/``conv*``: 2, ``addmm``: 0); None: the family's
    ``torch_args`` position of ``bias``, if it names one (``bias_position``).
    Row tiles add it once (with tile 0); a bias the graph adds after the node (a MatMul's ``Add``) is added
    after the ADC."""
    layout: Any = None
    """This call's parameter-to-graph layout where it is not the family's (a ``linear`` on a 3-D input
    exports as a MatMul on the transposed weight); None: the family's ``layout``."""


@dataclass(frozen=True)
class OpFamily:
    """One crossbar op family, declared once: its ONNX op types and handler, and the torch functions that
    produce it with their matcher. Training's layer discovery, the plan, the graph pass and the profile
    schema's ``op_types`` all derive from the registered families."""

    name: str
    onnx_ops: tuple[str, ...]
    """ONNX op types of the family (what ``mapping.op_types`` lists)."""
    handle: Callable[[Any], WeightSite | tuple[WeightSite, ...] | Decline]
    """ONNX: ``handle(gs.Node)`` says where the node's weight is (a tuple for an op with several, such as
    LSTM's W and R), or why it cannot be mapped."""
    torch_functions: tuple[str, ...]
    """``__name__`` of the torch functions of the family (``conv2d``, ``linear``, ``matmul``)."""
    torch_site: Callable[[str, tuple, Any], TorchSite | tuple[TorchSite, ...] | None]
    """torch: ``torch_site(function_name, args, is_weight)`` gives the site of a call whose weight argument
    is a parameter (``is_weight(tensor) -> bool``), or None when no argument is one."""
    torch_args: tuple[str, ...] = ("input", "weight", "bias")
    """Names of the torch functions' leading arguments, so a weight passed by keyword is found too."""
    fold_chips: bool = False
    """ONNX Runtime runs this family faster with each chip's weights folded into constants (pre-packed
    convolution kernels): the evaluator's ``auto`` strategy folds models that map it."""
    converters: bool = True
    """Whether a mapped node gets the profile's DAC (on its activation) and ADC (on its output) in both
    engines. False where the crossbar's inputs and outputs are internal to the op (a recurrent cell)."""
    layout: Any = None
    """How the torch parameter maps onto the ONNX weight, where the exporter reorders it: an object with
    ``to_graph(tensor)`` and ``to_torch(tensor)`` (inverse permutations, differentiable). The plan rows
    (shape, output axis, chip draws) are in the graph's layout; torch applies noise there and maps back.
    None: the same layout."""
    weight_origin: Callable[[list[str]], str | None] | None = None
    """Given the names a folded ONNX constant was computed from (the exporter's
    ``pkg.onnxscript.optimizer.folded_from`` metadata), the torch parameter it stands for, or None. The
    graph pass names such a weight after its parameter, so both engines name the layer alike."""


def positional(family: OpFamily, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """``args`` with the family's leading keyword arguments moved into their positions, and the rest."""
    if not kwargs:
        return tuple(args), {}
    args, rest = list(args), dict(kwargs)
    for i, name in enumerate(family.torch_args):
        if i == len(args) and name in rest:
            args.append(rest.pop(name))
    return tuple(args), rest


def bias_position(family: OpFamily, site: TorchSite) -> int | None:
    """Where the call's bias argument is: the site's ``bias_arg``, else the family's ``torch_args`` position of
    ``bias`` (a plugin family written before ``bias_arg``), else None."""
    if site.bias_arg is not None:
        return site.bias_arg
    return family.torch_args.index("bias") if "bias" in family.torch_args else None


def weight_of(args: tuple, site: TorchSite):
    """The weight argument of a torch call that ``site`` names (an argument, or an item of a list argument)."""
    if isinstance(site.weight_arg, tuple):
        arg, index = site.weight_arg
        return args[arg][index]
    return args[site.weight_arg]


def sites(answer) -> tuple:
    """A handler's or torch matcher's answer as a tuple of sites (one site, several, or none for None)."""
    if answer is None:
        return ()
    return answer if isinstance(answer, tuple) else (answer,)


def constant_input(node, index: int):
    """The node's input ``index`` when it is a constant (initializer), else None."""
    import onnx_graphsurgeon as gs  # lazily: the registry is read by profile validation, which stays light

    if index < len(node.inputs) and isinstance(node.inputs[index], gs.Constant):
        return node.inputs[index]
    return None
