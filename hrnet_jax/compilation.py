"""Compiling programs that run once (initialisation) for compile speed rather than run speed."""

from __future__ import annotations

from typing import Any, Callable

import jax

# XLA's backend optimisations make initialisation run faster but compile much slower, and it runs once: without
# them the hrnet_tiny train-state init (SGD with momentum) compiles in 7.9 s instead of 18.6 s on a 2-core CPU
# (``python benchmarks/init_compile.py``; benchmarks/RESULTS.md).
# Values differ from the optimised program's by at most one float32 ulp.
RUN_ONCE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def run_once(fn: Callable[..., Any], *args: Any, out_shardings: Any = None) -> Any:
  """``jax.jit(fn)(*args)``, compiled without backend optimisations."""
  jitted = jax.jit(fn) if out_shardings is None else jax.jit(fn, out_shardings=out_shardings)
  return jitted.lower(*args).compile(compiler_options=RUN_ONCE_COMPILER_OPTIONS)(*args)
