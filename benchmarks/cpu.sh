#!/usr/bin/env bash
# The CPU figures of benchmarks/RESULTS.md: run on an otherwise idle machine, from the repository root.
#   bash benchmarks/cpu.sh            (about 15 minutes on 2 cores; appends to benchmarks/cpu.jsonl)
set -euo pipefail
OUT=benchmarks/cpu.jsonl
TINY_HEAD="--override num_classes=4 --override head_channels=[8,16,32,64] --override final_channels=256"
for mode in train infer; do
  python -m hrnet_jax.benchmark --model hrnet_tiny --size 64x64 --batch 32 --mode $mode --steps 20 $TINY_HEAD --output $OUT
  python -m hrnet_jax.benchmark --model hrnet_w18 --size 224x224 --batch 8 --mode $mode --steps 5 --warmup 1 --output $OUT
done
python -m hrnet_jax.benchmark --model hrnet_tiny --size 64x64 --batch 32 --mode train --dtype bfloat16 --steps 20 $TINY_HEAD --output $OUT

# Input pipelines: ImageNet preprocessing on 500x375 JPEGs (ImageNet's typical size), and the demo's synthetic data.
python benchmarks/make_jpeg_folder.py /tmp/jpeg_folder --classes 10 --per-class 100
python -m hrnet_jax.data.benchmark --config configs/imagenet.py:variant=w18,batch=64,classes=10 \
  --config.data.name=image_folder --config.data.data_dir=/tmp/jpeg_folder --config.data.eval_split=val \
  --config.eval_batch_size=64 --batches 12 --output benchmarks/pipeline_cpu.jsonl
python -m hrnet_jax.data.benchmark --config configs/demo.py --batches 50 --output benchmarks/pipeline_cpu.jsonl
