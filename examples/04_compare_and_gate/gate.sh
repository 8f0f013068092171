#!/usr/bin/env bash
# Pre- vs post-NFT on the same chips, then the CI gate (passing and failing thresholds).
set -euo pipefail
source "$(dirname "$0")/../scale.sh"
nft-deploy compare "$OUT/noise_injection.cim.onnx" "$OUT/ovf.cim.onnx" --data mnist-5k --chips "$CHIPS" \
  $EVAL_LIMIT --markdown "$OUT/compare.md" --plots "$OUT/plots-compare" --quiet
nft-deploy check "$OUT/ovf.cim.onnx" --data mnist-5k --chips "$CHIPS" $EVAL_LIMIT --quiet \
  --min-accuracy 0.05 --percentile 5 --junit "$OUT/gate.xml"
if nft-deploy check "$OUT/ovf.cim.onnx" --data mnist-5k --chips "$CHIPS" $EVAL_LIMIT --quiet --min-accuracy 0.999; then
  echo "unexpected: a 99.9% bar passed"; exit 1
else
  echo "the 99.9% bar failed, as it should: exit code 1 stops a CI job"
fi
