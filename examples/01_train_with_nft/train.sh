#!/usr/bin/env bash
# Train LeNet-5 at sigma_d = 0.3 on the NFT reference device: the noise-injection baseline, then OVF.
set -euo pipefail
source "$(dirname "$0")/../scale.sh"
nft-deploy train --model lenet5 --data mnist-5k --method noise_injection --profile nft_reference --sigma 0.3 \
  --epochs "$EPOCHS" $TRAIN_LIMIT --seed 0 -o "$OUT/noise_injection.pt"
nft-deploy train --model lenet5 --data mnist-5k --method ovf --beta 1e-3 --profile nft_reference --sigma 0.3 \
  --epochs "$EPOCHS" $TRAIN_LIMIT --seed 0 --mc-chips 20 -o "$OUT/ovf.pt"
