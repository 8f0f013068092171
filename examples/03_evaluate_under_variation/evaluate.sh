#!/usr/bin/env bash
# Monte Carlo over programmed chips, with reports, then an accuracy-vs-sigma sweep.
set -euo pipefail
source "$(dirname "$0")/../scale.sh"
nft-deploy evaluate "$OUT/ovf.cim.onnx" --data mnist-5k --chips "$CHIPS" --seed 0 $EVAL_LIMIT \
  --json "$OUT/ovf.eval.json" --markdown "$OUT/ovf.eval.md" --plots "$OUT/plots"
nft-deploy evaluate "$OUT/ovf.cim.onnx" --data mnist-5k --chips "$CHIPS" --seed 0 $EVAL_LIMIT \
  --sweep 0:0.4:0.1 --plots "$OUT/plots-sweep" --quiet
python "$(dirname "$0")/read_results.py" "$OUT/ovf.eval.json"
