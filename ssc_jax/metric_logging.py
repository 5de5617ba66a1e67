"""Training metrics: TensorBoard event files (clu) plus one JSON line per logged step.

Only process 0 writes; the trainer prints its own progress line.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping

from clu import metric_writers
import jax

from ssc_jax import paths


class MetricLogger:
  """Writes scalars to TensorBoard event files and to `<workdir>/metrics.jsonl`.

  Args:
    workdir: the run's directory (local or `gs://`).
  """

  def __init__(self, workdir: paths.PathLike):
    self._enabled = jax.process_index() == 0
    if self._enabled:
      workdir = paths.resolve(workdir)
      self._writer = metric_writers.SummaryWriter(str(workdir))
      self._files = contextlib.ExitStack()  # epath's open is a context manager.
      self._jsonl = self._files.enter_context((workdir / "metrics.jsonl").open("a"))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes one step's scalars (Python floats) to every sink."""
    if not self._enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._writer.write_scalars(step, scalars)
    row = {"step": step, **{k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    if self._enabled:
      self._writer.close()
      self._files.close()
