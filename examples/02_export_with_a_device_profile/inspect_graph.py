"""Show what the graph pass put into a deployed model: chip inputs, op counts, metadata."""

import collections
import json
import sys

import onnx

model = onnx.load(sys.argv[1])
meta = {p.key: p.value for p in model.metadata_props}
print("chip inputs:", [i.name for i in model.graph.input if i.name.startswith("nft.")])
print("ops:", dict(collections.Counter(n.op_type for n in model.graph.node)))
plan = json.loads(meta["nft.plan"])
print("profile:", plan["profile"], "| mapped layers:", [row["name"] for row in plan["layers"] if row["mapped"]])
