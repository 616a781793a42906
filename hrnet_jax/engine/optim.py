"""Optimizers and learning-rate schedules from the config (optax).

Schedules are defined in epochs, as the papers state them, and converted to optimizer steps.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from hrnet_jax.registry import unknown_name


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int,
                           steps_per_epoch: int) -> optax.Schedule:
  """Warm-up, then 'constant', 'cosine', 'poly' (power ``power``) or 'step' (x ``decay_factor`` at each of
  ``milestones`` epochs, counted from the start). The warm-up (``warmup_epochs``) starts at ``warmup_ratio`` times
  the rate and rises linearly to it (``warmup='linear'``, from 0 by default) or stays there (``'constant'``, as
  MMDetection's ``warmup='constant'``)."""
  schedule = config.schedule
  base = config.optimizer.learning_rate
  warmup = int(round(schedule.warmup_epochs * steps_per_epoch))
  remaining = max(total_steps - warmup, 1)
  name = schedule.name
  if name == "constant":
    main = optax.constant_schedule(base)
  elif name == "cosine":
    main = optax.cosine_decay_schedule(base, remaining)
  elif name == "poly":
    main = optax.polynomial_schedule(base, 0.0, schedule.power, remaining)
  elif name == "step":
    boundaries = {int(round(e * steps_per_epoch)) - warmup: schedule.decay_factor
                  for e in schedule.milestones}
    main = optax.piecewise_constant_schedule(base, boundaries)
  else:
    raise unknown_name("schedule", name, ["constant", "cosine", "poly", "step"])
  if not warmup:
    return main
  start = base * schedule.warmup_ratio
  if schedule.warmup == "linear":
    ramp = optax.linear_schedule(start, base, warmup)
  elif schedule.warmup == "constant":
    ramp = optax.constant_schedule(start)
  else:
    raise unknown_name("warmup", schedule.warmup, ["linear", "constant"])
  return optax.join_schedules([ramp, main], [warmup])


def layer_bias_mask(params: Any) -> Any:
  """True for the biases of convolutions and linear layers (a ``bias`` beside a ``kernel``), not of norms."""
  def mark(tree: Mapping[str, Any]) -> dict[str, Any]:
    return {name: mark(value) if isinstance(value, Mapping) else (name == "bias" and "kernel" in tree)
            for name, value in tree.items()}
  return mark(params)


def decay_mask(params: Any, rule: str) -> Any:
  """Which parameters get weight decay: 'all'; 'kernels' (norm scales/biases and conv/linear biases excluded, as
  many recipes do); or 'no_layer_bias' (all but conv/linear biases: MMDetection's ``bias_decay_mult=0``, norms
  decayed)."""
  if rule == "all":
    return jax.tree.map(lambda _: True, params)
  if rule == "kernels":
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)
  if rule == "no_layer_bias":
    return jax.tree.map(lambda is_bias: not is_bias, layer_bias_mask(params))
  raise unknown_name("weight_decay_mask", rule, ["all", "kernels", "no_layer_bias"])


def head_mask(params: Any) -> Any:
  """True for the head's parameters (the network's ``head`` module), False for the backbone's."""
  return {name: jax.tree.map(lambda _, in_head=name == "head": in_head, tree) for name, tree in params.items()}


def create_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """SGD (momentum, Nesterov; L2 added to the gradient as PyTorch's ``weight_decay``), Adam (likewise), or AdamW
  (decoupled decay), after optional global-norm clipping; the head's updates scaled by ``head_lr_multiplier``,
  the conv/linear biases' by ``bias_lr_multiplier`` (MMDetection's ``bias_lr_mult``).

  Scaling the final update is PyTorch's parameter group with ``lr * multiplier`` exactly, for each of these
  optimizers: their state does not depend on the learning rate, which multiplies only the update."""
  opt = config.optimizer
  name = opt.name
  weight_decay = opt.weight_decay
  mask = lambda params: decay_mask(params, opt.weight_decay_mask)
  chain = []
  if opt.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  if name in ("sgd", "adam") and weight_decay:
    chain.append(optax.add_decayed_weights(weight_decay, mask))
  if name == "sgd":
    chain.append(optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov))
  elif name == "adam":
    chain.append(optax.adam(schedule, b1=opt.b1, b2=opt.b2))
  elif name == "adamw":
    chain.append(optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=weight_decay,
                             mask=mask))
  else:
    raise unknown_name("optimizer", name, ["sgd", "adam", "adamw"])
  if opt.head_lr_multiplier != 1.0:
    chain.append(optax.masked(optax.scale(opt.head_lr_multiplier), head_mask))
  if opt.bias_lr_multiplier != 1.0:
    chain.append(optax.masked(optax.scale(opt.bias_lr_multiplier), layer_bias_mask))
  return optax.chain(*chain)


def update_ema(ema: Any, params: Any, decay: float) -> Any:
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(jnp.float32), ema, params)
