"""Compiling: programs that run once (initialisation) for compile speed rather than run speed, the options of the
steps that run many times, and the persistent cache that spares a resumed run its compilations."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
from absl import logging
from jax.experimental.compilation_cache import compilation_cache

# XLA's backend optimisations make initialisation run faster but compile much slower, and it runs once: without
# them the hrnet_tiny train-state init (SGD with momentum) compiles in 7.9 s instead of 18.6 s on a 2-core CPU
# (``python benchmarks/init_compile.py``; benchmarks/RESULTS.md).
# Values differ from the optimised program's by at most one float32 ulp.
RUN_ONCE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}

# Programs that run many times (train, eval and benchmark steps) on CPU: convolutions on XLA's own multi-threaded
# kernels instead of YNNPACK's (jaxlib 0.10's default), which run each convolution on one thread; YNNPACK keeps the
# reductions (BatchNorm's statistics), which XLA would otherwise split into slow reduce-windows. HRNet-W18 at 224,
# batch 8, 2 cores: inference 824 -> 627 ms per step, training 3680 -> 2809 ms (benchmarks/RESULTS.md, "Where the
# train step spent its time"). The flag is experimental: where the installed XLA does not know it, it is left out.
CPU_STEP_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}

CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def step_compiler_options(mesh: jax.sharding.Mesh) -> dict[str, str]:
  """The compiler options of a step that runs many times on ``mesh``'s devices (``jax.jit(compiler_options=)``)."""
  return _cpu_step_options() if mesh.devices.flat[0].platform == "cpu" else {}


@functools.cache
def _cpu_step_options() -> dict[str, str]:
  try:  # a trivial program tells whether this XLA accepts the options (an unknown one fails every compilation)
    jax.jit(lambda: 0).lower().compile(compiler_options=CPU_STEP_COMPILER_OPTIONS)
  except Exception as error:  # pylint: disable=broad-except  (XLA raises its own status errors)
    logging.warning("XLA does not take %s (%s); CPU steps compile with its defaults", CPU_STEP_COMPILER_OPTIONS,
                    str(error).splitlines()[0])
    return {}
  return dict(CPU_STEP_COMPILER_OPTIONS)


def run_once(fn: Callable[..., Any], *args: Any, out_shardings: Any = None) -> Any:
  """``jax.jit(fn)(*args)``, compiled without backend optimisations."""
  jitted = jax.jit(fn) if out_shardings is None else jax.jit(fn, out_shardings=out_shardings)
  return jitted.lower(*args).compile(compiler_options=RUN_ONCE_COMPILER_OPTIONS)(*args)


def compile_noting_the_cache(lowered: Any) -> tuple[Any, bool]:
  """``lowered.compile()``, and whether the persistent cache held the program (so it was loaded, not compiled).

  JAX records a cache hit as a monitoring event; the event, not the time taken, tells a load from a compilation, since
  on a loaded machine loading can take longer than a small compilation does on an idle one.
  """
  hits = []

  def note_hit(event: str, **kwargs: Any) -> None:
    del kwargs
    if event == CACHE_HIT_EVENT:
      hits.append(event)

  jax.monitoring.register_event_listener(note_hit)
  try:
    return lowered.compile(), bool(hits)
  finally:
    jax.monitoring.unregister_event_listener(note_hit)


def use_persistent_cache(setting: str, workdir: str) -> str | None:
  """Turns on JAX's persistent compilation cache, so that a resumed or repeated run loads its compiled programs
  instead of compiling them again; the folder used, or None.

  ``setting`` (``config.compilation_cache_dir``): a folder (local or remote, e.g. ``gs://``); ``"off"``; or ``""``,
  which keeps the folder JAX was given (``JAX_COMPILATION_CACHE_DIR``) and else uses ``WORKDIR/compilation_cache``,
  which travels with the run when a preempted job restarts elsewhere.
  """
  if setting == "off":
    folder = None
  else:
    folder = setting or jax.config.jax_compilation_cache_dir or f"{str(workdir).rstrip('/')}/compilation_cache"
  if folder != jax.config.jax_compilation_cache_dir:
    compilation_cache.set_cache_dir(folder)
    compilation_cache.reset_cache()  # the next compilation opens the new folder (JAX opens one once per process)
  return folder
