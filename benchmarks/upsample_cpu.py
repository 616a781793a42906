"""Nearest-neighbour upsampling in HRNet's fusion: broadcast + reshape (``layers.upsample_nearest``) against the
gather that ``jax.image.resize(method='nearest')`` lowers to, forward and backward, on the fusion shapes of
HRNet-W18 at 224x224 and batch 8 (every j > i pair of one stage-4 module). Run on an idle machine:

    python benchmarks/upsample_cpu.py
"""

import statistics
import time

import jax
import jax.numpy as jnp

from hrnet_jax.model import layers

WIDTH, BATCH, SIZE = 18, 8, 56  # the 1/4 branch of W18 at 224


def by_gather(x, factor):
  n, h, w, c = x.shape
  return jax.image.resize(x, (n, h * factor, w * factor, c), method="nearest")


def fusion_inputs():
  """Branch j brought to branch i's width, to be upsampled by 2^(j-i), for every j > i of a 4-branch module."""
  key = jax.random.key(0)
  pairs = []
  for i in range(4):
    for j in range(i + 1, 4):
      size = SIZE // 2**j
      pairs.append((jax.random.normal(key, (BATCH, size, size, WIDTH * 2**i)), 2 ** (j - i)))
  return pairs


def median_ms(fn, *args, repeats=30):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def main():
  pairs = fusion_inputs()
  xs, factors = [x for x, _ in pairs], [f for _, f in pairs]
  for name, upsample in (("broadcast", layers.upsample_nearest), ("gather", by_gather)):
    def loss(xs, upsample=upsample):
      return sum(jnp.sum(jnp.sin(upsample(x, f))) for x, f in zip(xs, factors))
    forward, backward = jax.jit(loss), jax.jit(jax.grad(loss))
    print(f"{name:9s} forward {median_ms(forward, xs):6.2f} ms  forward+backward {median_ms(backward, xs):6.2f} ms")
  same = all(bool(jnp.array_equal(layers.upsample_nearest(x, f), by_gather(x, f))) for x, f in pairs)
  gathers = jax.jit(lambda x: by_gather(x, 2)).lower(xs[0]).compile().as_text().count(" gather(")
  print(f"identical outputs: {same}; {len(pairs)} upsamplings; gathers in the resize program: {gathers}")


if __name__ == "__main__":
  main()
