"""What a handler answers about one node: where its crossbar weight is, or why it cannot be mapped.

Handlers only describe; the driver (``graph_pass``) inserts the nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_graphsurgeon as gs


@dataclass(frozen=True)
class WeightSite:
    """A node whose weight is a constant the device stores."""

    weight_input: int
    """Index of the weight among the node's inputs."""
    out_axis: int
    """Output-channel axis of the weight as stored (per-channel scale, stuck-at digits)."""
    data_input: int
    """Index of the activation input (where an input DAC goes)."""


@dataclass(frozen=True)
class Decline:
    """A node of a mappable op type that this handler cannot map."""

    reason: str
    """Short reason, shown in the report, e.g. ``weight not constant``."""
    fatal: bool = False
    """True when leaving the node digital would silently misrepresent the device (a Conv whose weight
    cannot be programmed): the pass stops unless the layer is kept digital by the profile."""


def constant_input(node: gs.Node, index: int) -> gs.Constant | None:
    """The node's input ``index`` when it is a constant (initializer), else None."""
    if index < len(node.inputs) and isinstance(node.inputs[index], gs.Constant):
        return node.inputs[index]
    return None
