#!/usr/bin/env bash
# Export the OVF checkpoint for two devices, and as a plain float ONNX (the clean baseline).
set -euo pipefail
source "$(dirname "$0")/../scale.sh"
nft-deploy export "$OUT/ovf.pt" --profile nft_reference -o "$OUT/ovf.cim.onnx"
nft-deploy export "$OUT/noise_injection.pt" --profile nft_reference -o "$OUT/noise_injection.cim.onnx"
nft-deploy export "$OUT/ovf.pt" --profile device_profiles/rram_4bit.json -o "$OUT/ovf.rram_4bit.cim.onnx"
nft-deploy export "$OUT/ovf.pt" --no-device -o "$OUT/ovf.float.onnx"
python "$(dirname "$0")/inspect_graph.py" "$OUT/ovf.rram_4bit.cim.onnx"
