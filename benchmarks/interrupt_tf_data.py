"""How often a Ctrl-C that lands inside tf.data's ``next`` crashes the process, raised there or held until the batch
is made (``hrnet_jax.data.pipeline.BatchIterator`` holds it).

    python benchmarks/interrupt_tf_data.py --processes 12

Each child process makes batches from a Python generator and is interrupted 40 times, every 20-150 ms; it exits 0
when it survives. The parent counts the children's exit codes per mode (-6: an abort, e.g. "free(): invalid next
size"; -11: SIGSEGV; -2: a Ctrl-C that landed in the child's own loop outside ``next``, not a crash).
"""

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import time

INTERRUPTS = 40


def child(mode: str) -> None:
  import numpy as np  # pylint: disable=import-outside-toplevel  (the parent never starts TensorFlow)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from hrnet_jax.data import pipeline  # pylint: disable=import-outside-toplevel

  def elements():
    while True:
      yield np.random.rand(64, 64, 3).astype(np.float32)

  dataset = tf.data.Dataset.from_generator(elements, output_signature=tf.TensorSpec((64, 64, 3), tf.float32))
  dataset = dataset.map(lambda image: tf.image.resize(image, (96, 96)), num_parallel_calls=2).batch(16).prefetch(2)
  batches = pipeline.BatchIterator(dataset) if mode == "held" else dataset.as_numpy_iterator()
  signal.signal(signal.SIGINT, signal.default_int_handler)
  print("ready", flush=True)
  interrupts = 0
  while True:
    try:
      if interrupts == INTERRUPTS:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        break
      next(batches)
    except KeyboardInterrupt:
      interrupts += 1
  os._exit(0)  # pylint: disable=protected-access  (no interpreter shutdown with TensorFlow's threads running)


def interrupted_exit_codes(mode: str, processes: int) -> collections.Counter:
  codes = collections.Counter()
  for _ in range(processes):
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    while "ready" not in proc.stdout.readline():
      pass
    while proc.poll() is None:
      time.sleep(random.uniform(0.02, 0.15))
      try:
        proc.send_signal(signal.SIGINT)
      except ProcessLookupError:
        pass
    proc.communicate()
    codes[proc.returncode] += 1
  return codes


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--processes", type=int, default=12, help="children per mode")
  parser.add_argument("--child", choices=["raised", "held"], help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(args.child)
  for mode in ("raised", "held"):
    print(mode, dict(interrupted_exit_codes(mode, args.processes)), flush=True)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  main()
