#!/usr/bin/env bash
# Deploy an ONNX model trained elsewhere on PCM and evaluate it: no torch involved.
set -euo pipefail
source "$(dirname "$0")/../scale.sh"
python "$(dirname "$0")/make_foreign_model.py" "$OUT/foreign_mlp.onnx"
nft-deploy export "$OUT/foreign_mlp.onnx" --profile pcm_8bit -o "$OUT/foreign_mlp.pcm.cim.onnx"
nft-deploy evaluate "$OUT/foreign_mlp.pcm.cim.onnx" --data mnist-5k --chips "$CHIPS" $EVAL_LIMIT --quiet
nft-deploy evaluate "$OUT/foreign_mlp.onnx" --profile rram_4bit --data mnist-5k --chips "$CHIPS" $EVAL_LIMIT --quiet
