#!/usr/bin/env bash
# A PCM chip read over a year (drift, with and without compensation), then the same model on 128x128 RRAM
# arrays with 6-bit partial-sum ADCs.
set -euo pipefail
source "$(dirname "$0")/../scale.sh"
nft-deploy train --model lenet5 --data mnist-5k --method noise_injection --profile pcm_drift --epochs "$EPOCHS" \
  $TRAIN_LIMIT --quiet -o "$OUT/pcm.pt"
# 1. drift: every chip programmed once and read at each time; the same chips without compensation
nft-deploy evaluate "$OUT/pcm.pt" --data mnist-5k --time 20s,1h,1d,30d,1y --chips "$CHIPS" $EVAL_LIMIT --quiet \
  --json "$OUT/drift.json" --plots "$OUT/plots-drift"
nft-deploy profiles show pcm_drift | python -c "import json, sys; p = json.load(sys.stdin); \
p['name'] = 'pcm_drift_uncompensated'; p['drift']['compensation'] = 'none'; print(json.dumps(p))" \
  > "$OUT/pcm_drift_none.json"
nft-deploy evaluate "$OUT/pcm.pt" --profile "$OUT/pcm_drift_none.json" --data mnist-5k --time 20s,1h,1d,30d,1y \
  --chips "$CHIPS" $EVAL_LIMIT --quiet --json "$OUT/drift_none.json" --plots "$OUT/plots-drift-none"
python "$(dirname "$0")/compare_times.py" "$OUT/drift.json" "$OUT/drift_none.json"
# 2. arrays: how the layers tile onto 128x128 arrays, then the Monte Carlo with partial-sum ADCs
nft-deploy plan "$OUT/pcm.pt" --profile rram_128x128_adc6
nft-deploy evaluate "$OUT/pcm.pt" --profile rram_128x128_adc6 --data mnist-5k --chips "$CHIPS" $EVAL_LIMIT --quiet
