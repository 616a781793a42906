"""Metrics to ``metrics.jsonl`` and TensorBoard (scalars, pictures, hyperparameters; without TensorFlow), where
the time of each log interval went, and the progress lines of training and evaluation.

Only process 0 writes; every call is a no-op elsewhere, so the training loop needs no ``if``.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import os
import socket
import time
from typing import Any, Iterator, Sequence, TypeVar

from absl import logging
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.summary.writer.record_writer import RecordWriter

from hrnet_jax import files


class _EventFile:
  """A TensorBoard event file, written through ``files`` (so on any file system the workdir is on)."""

  def __init__(self, folder: files.PathLike):
    folder = files.path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}"
    self._records = RecordWriter((folder / name).open("wb"))
    self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def add_event(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    self._records.close()


class MetricWriter:
  """Writes one ``{"step": s, name: value, ...}`` line per logged step to ``workdir/metrics.jsonl`` (what is
  written at the same step, e.g. training means and an evaluation, shares the line) and scalar summaries to TB.

  ``resume_step``: the run resumes from that step's checkpoint, so the lines of later steps (written before an
  interruption, and about to be written again) are dropped first, by an atomic rewrite of the file; what is written
  again at ``resume_step`` itself (an evaluation the interruption cut off) joins that step's line.
  """

  def __init__(self, workdir: files.PathLike, enabled: bool = True, resume_step: int | None = None):
    self.enabled = enabled
    self.workdir = files.path(workdir)
    self.path = self.workdir / "metrics.jsonl"
    self._events = _EventFile(self.workdir / "tensorboard") if enabled else None
    self._step: int | None = None
    self._row: dict[str, float] = {}
    self._step_on_disk: int | None = None  # a step whose line is in the file already
    if enabled and resume_step is not None and self.path.exists():
      lines = [line for line in self.path.read_text().splitlines() if line.strip()]
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
    self._add(step, summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)
                                               for k, v in values.items()]))

  def write_images(self, step: int, images: dict[str, Image.Image]) -> None:
    """Pictures for TensorBoard's Images tab (PNG), e.g. an evaluation's predictions drawn."""
    if not self.enabled or not images:
      return
    values = []
    for tag, image in images.items():
      png = io.BytesIO()
      image.convert("RGB").save(png, format="PNG")
      values.append(summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
          height=image.height, width=image.width, colorspace=3, encoded_image_string=png.getvalue())))
    self._add(step, summary_pb2.Summary(value=values))

  def write_hparams(self, hparams: dict[str, Any]) -> None:
    """The run's settings for TensorBoard's HParams tab, where the runs of a sweep compare side by side (values
    that are not numbers, strings or booleans are shown as strings)."""
    if not self.enabled:
      return
    shown = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}
    self._add(0, hparams_summary.hparams_pb(shown))

  def _add(self, step: int, summary: summary_pb2.Summary) -> None:
    self._events.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    self._events.flush()

  def flush(self) -> None:
    """Writes the current step's line (done by the next step's first write, before a checkpoint, and at close)."""
    if not self._row:
      return
    if self._step == self._step_on_disk:
      rows = read_metrics(self.workdir)
      _write_rows(self.path, rows[:-1] + [{**rows[-1], **self._row}])
    else:
      files.append_text(self.path, json.dumps({"step": self._step, **self._row}) + "\n")
    self._row, self._step_on_disk = {}, None

  def close(self) -> None:
    if self._events is not None:
      self.flush()
      self._events.close()


def _write_rows(path: files.PathLike, rows: list[dict[str, Any]]) -> None:
  files.write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_metrics(workdir: files.PathLike) -> list[dict[str, Any]]:
  """Every line of ``workdir/metrics.jsonl``; a last line cut short (a run killed while appending it) is left out."""
  path = files.path(workdir) / "metrics.jsonl"
  lines = [line for line in path.read_text().splitlines() if line.strip()]
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
  """One line per log interval: step/total, loss, lr, images/s, where the time went and ETA."""

  def __init__(self, total_steps: int, global_batch_size: int, start_step: int):
    self.total_steps = total_steps
    self.global_batch_size = global_batch_size
    self._last_step = start_step
    self._last_time = time.perf_counter()

  def update(self, step: int, loss: float, learning_rate: float, times: dict[str, float]) -> float:
    """Logs the line (with where the interval's time went: ``Stopwatch.split``) and returns images/s since the
    last call."""
    now = time.perf_counter()
    steps = max(step - self._last_step, 1)
    seconds_per_step = (now - self._last_time) / steps
    images_per_second = self.global_batch_size / seconds_per_step if seconds_per_step > 0 else math.inf
    eta = format_duration(seconds_per_step * (self.total_steps - step))
    logging.info("step %d/%d | loss %.4f | lr %.3g | %.0f img/s | %s | ETA %s", step, self.total_steps, loss,
                 learning_rate, images_per_second, time_shares(times), eta)
    self._last_step, self._last_time = step, now
    return images_per_second


class Stopwatch:
  """Where the time of each log interval went: ``with stopwatch.timing("data"): ...`` around the waits for the
  input, evaluations and checkpoints; the rest of the interval is the training step (dispatch and the device).

  ``split()`` gives the seconds of each since the last split, as ``time/<activity>_seconds`` metrics.
  """

  ACTIVITIES = ("data", "eval", "checkpoint")

  def __init__(self):
    self._start = time.perf_counter()
    self._spent: dict[str, float] = collections.defaultdict(float)

  @contextlib.contextmanager
  def timing(self, activity: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
      yield
    finally:
      self._spent[activity] += time.perf_counter() - start

  def split(self) -> dict[str, float]:
    now = time.perf_counter()
    spent = {activity: self._spent[activity] for activity in self.ACTIVITIES}
    spent["train_step"] = max(now - self._start - sum(spent.values()), 0.0)
    self._start, self._spent = now, collections.defaultdict(float)
    return {f"time/{activity}_seconds": seconds for activity, seconds in spent.items()}


def time_shares(times: dict[str, float]) -> str:
  """``data 15% eval 5% checkpoint 0% step 80%``, from ``Stopwatch.split``'s metrics."""
  total = sum(times.values()) or 1.0
  return " ".join(f"{key.removeprefix('time/').removesuffix('_seconds').replace('train_', '')} "
                  f"{100 * seconds / total:.0f}%" for key, seconds in times.items())


Item = TypeVar("Item")


def progress(items: Sequence[Item], what: str, every_seconds: float = 10.0) -> Iterator[Item]:
  """Yields ``items``, logging ``<what>: i/N (p%) | elapsed | ETA`` once each item is done: after the first, then
  every ``every_seconds``, and after the last (a long ``predict``)."""
  start = last = time.perf_counter()
  total = len(items)
  for done, item in enumerate(items, 1):
    yield item
    now = time.perf_counter()
    if done in (1, total) or now - last >= every_seconds:
      elapsed = now - start
      logging.info("%s: %d/%d (%.0f%%) | %s elapsed | ETA %s", what, done, total, 100 * done / total,
                   format_duration(elapsed), format_duration(elapsed / done * (total - done)))
      last = now


class EvalProgress:
  """Progress lines of a long evaluation (batches and examples done of the total, elapsed, ETA): after the first
  batch, then every ``every_seconds``, and at the end."""

  def __init__(self, total_examples: int | None, batch_size: int, every_seconds: float = 10.0):
    self.total_batches = math.ceil(total_examples / batch_size) if total_examples else None
    self.total_examples, self.batch_size, self.every_seconds = total_examples, batch_size, every_seconds
    self._start = self._last = time.perf_counter()

  def update(self, batches: int) -> None:
    now = time.perf_counter()
    if self.total_batches is None:
      return
    if not (batches in (1, self.total_batches) or now - self._last >= self.every_seconds):
      return
    elapsed = now - self._start
    examples = min(batches * self.batch_size, self.total_examples)
    eta = format_duration(elapsed / batches * (self.total_batches - batches))
    logging.info("evaluating: batch %d/%d (%d/%d examples, %.0f%%) | %s elapsed | ETA %s", batches,
                 self.total_batches, examples, self.total_examples, 100 * examples / self.total_examples,
                 format_duration(elapsed), eta)
    self._last = now
