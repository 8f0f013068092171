# Sizes shared by the example scripts. NFT_EXAMPLE_QUICK=1 (set by the examples test) shrinks them.
if [ -n "${NFT_EXAMPLE_QUICK:-}" ]; then
  EPOCHS=1; CHIPS=8; TRAIN_LIMIT="--limit-train 500 --limit-test 200"; EVAL_LIMIT="--limit 200"
else
  EPOCHS=10; CHIPS=100; TRAIN_LIMIT=""; EVAL_LIMIT=""
fi
OUT=runs/examples
mkdir -p "$OUT"
