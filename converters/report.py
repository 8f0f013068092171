"""What the graph pass did, as plain data: the device plan, rewritten nodes, pass-through ops.

``summary()`` gives the one-screen report the CLI prints, e.g.
``Inserted | 2 Conv, 3 Gemm`` / ``Skipped | 1 MatMul (weight not constant)``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

from nft_deploy.device_plan import DevicePlan, LayerPlan, table

META_REWRITTEN = "nft.rewritten"  # JSON list of {"node", "op_type", "layer"}: nodes that read a deployed weight


@dataclass(frozen=True)
class _NodeRow:
    node: str
    op_type: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SkippedNode(_NodeRow):
    """A node of a mappable op type left as it was."""

    reason: str


@dataclass(frozen=True)
class RewrittenNode(_NodeRow):
    """A node that now reads its layer's deployed weight (and DAC/ADC nodes where the profile asks)."""

    layer: str


@dataclass
class PassReport:
    """The outcome of ``insert_device_nodes``."""

    plan: DevicePlan | None = None
    """The compiled device plan: every weight-bearing layer, mapped or digital and why (metadata ``nft.plan``)."""
    rewritten: list[RewrittenNode] = field(default_factory=list)
    """Nodes whose weight input was replaced (a layer whose weight is shared feeds several)."""
    passthrough: dict[str, int] = field(default_factory=dict)
    """Op types without a handler and how many of each passed through untouched."""
    inserted_nodes: int = 0
    """Number of nodes the pass added."""
    seconds: float = 0.0
    """Wall time of the pass."""

    @property
    def layers(self) -> list[LayerPlan]:
        """Crossbar-mapped layers in graph order."""
        return self.plan.mapped if self.plan is not None else []

    @property
    def skipped(self) -> list[SkippedNode]:
        """Nodes of mappable op types left digital, with the reason (metadata ``nft.skipped``)."""
        rows = self.plan.layers if self.plan is not None else ()
        return [SkippedNode(lay.name if lay.node is None else lay.node, lay.op, lay.reason) for lay in rows if not lay.mapped]

    @property
    def chip_inputs(self) -> list[str]:
        """Graph inputs an evaluator must feed per chip (programming variation, then stuck-at)."""
        return self.plan.chip_inputs if self.plan is not None else []

    def summary(self) -> list[str]:
        """The one-screen report: ``Inserted | 2 Conv, 3 Gemm``, skipped and passed-through ops, the plan."""
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
        if self.plan is not None:
            lines += ["Plan     |"] + ["  " + row for row in table(self.plan)]
        return lines

    def metadata(self) -> dict[str, str]:
        """The report's metadata_props entries (besides profile, version and source hash)."""
        from nft_deploy.chips import META_PLAN, META_SKIPPED

        return {
            META_PLAN: self.plan.to_json(),
            META_SKIPPED: json.dumps([s.to_dict() for s in self.skipped]),
            META_REWRITTEN: json.dumps([r.to_dict() for r in self.rewritten]),
        }


def _counts(ops) -> str:
    c = Counter(ops)
    return ", ".join(f"{n} {op}" for op, n in c.items()) or "nothing"
