#!/usr/bin/env bash
# The GPU table of benchmarks/RESULTS.md: ours against timm's HRNet on one lent H100/H200, from the repository root.
#
# That machine has jax, flax, optax, orbax, chex, torch and timm, but not ml-collections. Carry its wheel:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl ml-collections
# then one device call per group (each stays under 10 minutes), appending JSON lines to $OUT/gpu.jsonl:
#   bash benchmarks/gpu.sh classification $OUT    # ours: W18/W32/W48 at 224, train and infer, bf16
#   bash benchmarks/gpu.sh dense $OUT             # ours: pose W32 256x192, segmentation W48 512x1024; scan_repeats
#   bash benchmarks/gpu.sh torch $OUT             # timm: the same rows, AMP + channels_last, eager and compiled
set -euo pipefail
GROUP=$1
OUT=${2:-benchmarks}
PEAK=${PEAK_TFLOPS:-989}  # dense bf16 TFLOP/s of an H100 SXM (an H200 has the same)
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PWD:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/gpu_device.txt"

ours() {
  python3 -m hrnet_jax.benchmark --dtype bfloat16 --peak-tflops "$PEAK" --steps 30 --output "$OUT/gpu.jsonl" "$@"
}
theirs() {
  for compiled in "" "--compile"; do
    python3 benchmarks/torch_reference.py --amp --channels-last $compiled --steps 30 --output "$OUT/gpu.jsonl" "$@"
  done
}

case "$GROUP" in
  classification)
    for width in 18 32 48; do
      for mode in train infer; do ours --model "hrnet_w$width" --size 224x224 --batch 128 --mode $mode; done
    done ;;
  dense)
    for mode in train infer; do
      ours --model hrnet_w32 --task pose --size 256x192 --batch 64 --mode $mode
      ours --model hrnet_w48 --task segmentation --size 512x1024 --batch 8 --mode $mode
    done
    ours --model hrnet_w32 --size 224x224 --batch 128 --mode train --override scan_repeats=true ;;
  torch)
    for width in 18 32 48; do theirs --model "hrnet_w$width" --size 224x224 --batch 128 --mode train; done
    theirs --model hrnet_w32 --task pose --size 256x192 --batch 64 --mode train
    theirs --model hrnet_w48 --task segmentation --size 512x1024 --batch 8 --mode train ;;
  *)
    echo "unknown group $GROUP: classification, dense or torch" >&2; exit 2 ;;
esac
