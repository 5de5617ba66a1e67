"""Training metrics: TensorBoard event files (clu) plus one JSON line per logged step.

Only process 0 writes; the trainer prints its own progress line.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

from clu import metric_writers
import jax


class MetricLogger:
  """Writes scalars to TensorBoard event files and to `<workdir>/metrics.jsonl`.

  Args:
    workdir: the run's directory.
  """

  def __init__(self, workdir: str):
    self._enabled = jax.process_index() == 0
    if self._enabled:
      self._writer = metric_writers.SummaryWriter(workdir)
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

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
      self._jsonl.close()
