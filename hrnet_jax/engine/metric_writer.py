"""Metrics to ``metrics.jsonl`` and TensorBoard (without TensorFlow), and the progress line.

Only process 0 writes; every call is a no-op elsewhere, so the training loop needs no ``if``.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from absl import logging
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from hrnet_jax import files


class MetricWriter:
  """Writes one ``{"step": s, name: value, ...}`` line per logged step to ``workdir/metrics.jsonl`` (what is
  written at the same step, e.g. training means and an evaluation, shares the line) and scalar summaries to TB.

  ``resume_step``: the run resumes from that step's checkpoint, so the lines of later steps (written before an
  interruption, and about to be written again) are dropped first, by an atomic rewrite of the file; what is written
  again at ``resume_step`` itself (an evaluation the interruption cut off) joins that step's line.
  """

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int | None = None):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._events = EventFileWriter(os.path.join(workdir, "tensorboard")) if enabled else None
    self._step: int | None = None
    self._row: dict[str, float] = {}
    self._step_on_disk: int | None = None  # a step whose line is in the file already
    if enabled and resume_step is not None and os.path.exists(self.path):
      with open(self.path) as f:
        lines = [line for line in f if line.strip()]
      kept = [row for row in read_metrics(workdir) if row["step"] <= resume_step]
      if len(kept) < len(lines):
        _write_rows(self.path, kept)
      if kept and kept[-1]["step"] == resume_step:
        self._step_on_disk = resume_step

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    values = {k: float(v) for k, v in metrics.items()}
    if step != self._step:
      self.flush()
      self._step = int(step)
    self._row.update(values)
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
    self._events.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    self._events.flush()

  def flush(self) -> None:
    """Writes the current step's line (done by the next step's first write, before a checkpoint, and at close)."""
    if not self._row:
      return
    if self._step == self._step_on_disk:
      rows = read_metrics(os.path.dirname(self.path))
      _write_rows(self.path, rows[:-1] + [{**rows[-1], **self._row}])
    else:
      with open(self.path, "a") as f:
        f.write(json.dumps({"step": self._step, **self._row}) + "\n")
    self._row, self._step_on_disk = {}, None

  def close(self) -> None:
    if self._events is not None:
      self.flush()
      self._events.close()


def _write_rows(path: str, rows: list[dict[str, Any]]) -> None:
  files.write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """Every line of ``workdir/metrics.jsonl``; a last line cut short (a run killed while appending it) is left out."""
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  rows = []
  for number, line in enumerate(lines, 1):
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      if number < len(lines):
        raise ValueError(f"{path}, line {number}, is not JSON") from None
      logging.warning("%s: the last line was cut short (a run killed while writing it); left out", path)
  return rows


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class Progress:
  """One line per log interval: step/total, loss, lr, images/s and ETA."""

  def __init__(self, total_steps: int, global_batch_size: int, start_step: int):
    self.total_steps = total_steps
    self.global_batch_size = global_batch_size
    self._last_step = start_step
    self._last_time = time.perf_counter()

  def update(self, step: int, loss: float, learning_rate: float) -> float:
    """Logs the line and returns images/s since the last call."""
    now = time.perf_counter()
    steps = max(step - self._last_step, 1)
    seconds_per_step = (now - self._last_time) / steps
    images_per_second = self.global_batch_size / seconds_per_step if seconds_per_step > 0 else math.inf
    eta = format_duration(seconds_per_step * (self.total_steps - step))
    logging.info("step %d/%d | loss %.4f | lr %.3g | %.0f img/s | ETA %s", step, self.total_steps, loss,
                 learning_rate, images_per_second, eta)
    self._last_step, self._last_time = step, now
    return images_per_second
