#!/usr/bin/env bash
# Validate a hand-written profile, see its closed-form noise, deploy the OVF model on it and evaluate.
set -euo pipefail
source "$(dirname "$0")/../scale.sh"
here="$(dirname "$0")"
nft-deploy profiles validate "$here/my_fefet.json"
nft-deploy profiles show "$here/my_fefet.json" --summary >/dev/null  # the closed-form noise, on stderr
if nft-deploy profiles validate "$here/broken.json"; then echo "unexpected: broken.json validated"; exit 1; fi
nft-deploy plan "$OUT/ovf.pt" --profile "$here/my_fefet.json"   # every layer: mapped or digital and why, its noise
nft-deploy export "$OUT/ovf.pt" --profile "$here/my_fefet.json" -o "$OUT/ovf.my_fefet.cim.onnx"
nft-deploy evaluate "$OUT/ovf.my_fefet.cim.onnx" --data mnist-5k --chips "$CHIPS" $EVAL_LIMIT --quiet
