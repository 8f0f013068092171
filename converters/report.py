"""What the graph pass did, as plain data: mapped layers, rewritten and skipped nodes, pass-through ops.

``summary()`` gives the one-screen report the CLI prints, e.g.
``Inserted | 2 Conv, 3 Gemm`` / ``Skipped | 1 MatMul (weight not constant)``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

from nft_deploy.chips import DeployedLayer

META_REWRITTEN = "nft.rewritten"  # JSON list of {"node", "op_type", "layer"}: nodes that read a deployed weight


@dataclass(frozen=True)
class SkippedNode:
    """A node of a mappable op type left as it was."""

    node: str
    op_type: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RewrittenNode:
    """A node that now reads its layer's deployed weight (and DAC/ADC nodes where the profile asks)."""

    node: str
    op_type: str
    layer: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PassReport:
    """The outcome of ``insert_device_nodes``."""

    layers: list[DeployedLayer] = field(default_factory=list)
    """Crossbar-mapped layers in graph order (also in metadata ``nft.layers``)."""
    rewritten: list[RewrittenNode] = field(default_factory=list)
    """Nodes whose weight input was replaced (a layer whose weight is shared feeds several)."""
    skipped: list[SkippedNode] = field(default_factory=list)
    """Nodes of mappable op types left untouched, with the reason (metadata ``nft.skipped``)."""
    passthrough: dict[str, int] = field(default_factory=dict)
    """Op types without a handler and how many of each passed through untouched."""
    inserted_nodes: int = 0
    """Number of nodes the pass added."""
    seconds: float = 0.0
    """Wall time of the pass."""

    @property
    def chip_inputs(self) -> list[str]:
        """Graph inputs an evaluator must feed per chip (programming variation, then stuck-at)."""
        return [n for lay in self.layers for n in (lay.chip_input, lay.stuck_input) if n]

    def summary(self) -> list[str]:
        """The one-screen report: ``Inserted | 2 Conv, 3 Gemm`` and, when any, skipped and passed-through ops."""
        mapped = _counts(r.op_type for r in self.rewritten)
        if self.inserted_nodes:
            lines = [f"Inserted | {mapped} | {self.inserted_nodes} nodes, {len(self.chip_inputs)} chip inputs"]
        else:
            lines = [f"Mapped   | {mapped} | ideal device: no nodes needed"]
        if self.skipped:
            by_reason = Counter((s.op_type, s.reason) for s in self.skipped)
            lines.append("Skipped  | " + ", ".join(f"{n} {op} ({why})" for (op, why), n in by_reason.items()))
        if self.passthrough:
            lines.append("Passed   | " + ", ".join(f"{n} {op}" for op, n in sorted(self.passthrough.items())))
        return lines

    def metadata(self) -> dict[str, str]:
        """The report's metadata_props entries (besides profile, version and source hash)."""
        from nft_deploy.chips import META_LAYERS, META_SKIPPED, layers_to_json

        return {
            META_LAYERS: layers_to_json(self.layers),
            META_SKIPPED: json.dumps([s.to_dict() for s in self.skipped]),
            META_REWRITTEN: json.dumps([r.to_dict() for r in self.rewritten]),
        }


def _counts(ops) -> str:
    c = Counter(ops)
    return ", ".join(f"{n} {op}" for op, n in c.items()) or "nothing"
