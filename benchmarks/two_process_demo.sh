#!/bin/bash
# Two processes x 2 CPU devices train the demo for 60 steps; the median of the 20-step intervals' images/s
# (metrics.jsonl), for the code at a given checkout. Usage: bash benchmarks/two_process_demo.sh CHECKOUT WORKDIR (CHECKOUT: a checkout of the code to
# time, e.g. a git worktree; the demo's synthetic data in /tmp/tfds)
set -e
checkout=$1; workdir=$2; rm -rf "$workdir"
port=$(python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
for i in 0 1; do
  (cd "$checkout" && XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=2 \
   python -m hrnet_jax.train --config configs/demo.py --workdir "$workdir" --config.total_steps=60 \
   --config.log_every=20 --config.checkpoint_every=1000 --config.data.data_dir=/tmp/tfds \
   --config.data.eval_split='validation[:64]' --config.best_metric= --config.global_batch_size=16 \
   --config.data.image_size=32 --coordinator_address=127.0.0.1:$port --num_processes=2 --process_id=$i \
   > "$workdir.$i.log" 2>&1) &
done
wait
python -c "
import json; rows=[json.loads(l) for l in open('$workdir/metrics.jsonl')]
print('$checkout', [round(r['train/images_per_second'],1) for r in rows if 'train/images_per_second' in r])"
