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
# Repeated modules and blocks as nn.scan (model option scan_repeats): compile time and step time, side by side.
for mode in train infer; do
  for scan in false true; do
    python -m hrnet_jax.benchmark --model hrnet_w18 --size 224x224 --batch 8 --mode $mode --steps 7 --warmup 2 \
      --override scan_repeats=$scan --output benchmarks/scan_cpu.jsonl
  done
done
for mode in train infer; do  # the tiny pose config's network (configs/coco_pose.py:tiny)
  python -m hrnet_jax.benchmark --model hrnet_tiny --task pose --size 64x64 --batch 32 --mode $mode --steps 20 \
    --override num_keypoints=6 --override fixed_stage1=false --output $OUT
done

# Input pipelines: ImageNet preprocessing on 500x375 JPEGs (ImageNet's typical size), and the demo's synthetic data.
python benchmarks/make_jpeg_folder.py /tmp/jpeg_folder --classes 10 --per-class 100
python -m hrnet_jax.data.benchmark --config configs/imagenet.py:variant=w18,batch=64,classes=10 \
  --config.data.name=image_folder --config.data.data_dir=/tmp/jpeg_folder --config.data.eval_split=val \
  --config.eval_batch_size=64 --batches 12 --output benchmarks/pipeline_cpu.jsonl
python -m hrnet_jax.data.benchmark --config configs/demo.py --batches 50 --output benchmarks/pipeline_cpu.jsonl

# COCO pose preprocessing on the real fixture (4 val2017 JPEGs), laid out as the official download.
M=/tmp/coco_manual; rm -rf $M /tmp/cocodata; mkdir -p $M/annotations $M/val2017
ln -s "$(realpath ../shared/data/coco/test_coco.json)" $M/annotations/person_keypoints_val2017.json
ln -s "$(realpath ../shared/data/coco)"/*.jpg $M/val2017/
python -m hrnet_jax.data.prepare coco_keypoints --manual_dir $M --data_dir /tmp/cocodata
python -m hrnet_jax.data.benchmark --config configs/coco_pose.py:w32_256x192,boxes=gt --config.data.data_dir=/tmp/cocodata \
  --config.data.train_split=validation --config.global_batch_size=32 --config.eval_batch_size=32 --batches 30 \
  --output benchmarks/pipeline_cpu.jsonl

# Cityscapes preprocessing on Cityscapes-shaped 2048x1024 PNGs (no Cityscapes here), laid out as the official download.
python benchmarks/make_cityscapes_folder.py /tmp/cityscapes_manual --train 24 --val 8
python -m hrnet_jax.data.prepare semantic_segmentation/cityscapes --manual_dir /tmp/cityscapes_manual \
  --data_dir /tmp/cityscapesdata
python -m hrnet_jax.data.benchmark --config configs/cityscapes.py:w48 --config.data.data_dir=/tmp/cityscapesdata \
  --config.eval_batch_size=4 --batches 10 --warmup 2 --output benchmarks/pipeline_cpu.jsonl
