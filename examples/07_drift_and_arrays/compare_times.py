"""Print accuracy against time for two evaluate --time reports side by side (compensated, uncompensated)."""

import json
import sys

with_comp, without = (json.load(open(path)) for path in sys.argv[1:3])
print(f"{'time':>8}  {'global compensation':>20}  {'none':>8}")
for a, b in zip(with_comp["times"], without["times"], strict=True):
    print(f"{a['label']:>8}  {100 * a['accuracy']['mean']:19.2f}%  {100 * b['accuracy']['mean']:7.2f}%")
