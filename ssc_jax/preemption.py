"""Stop requests: SIGTERM/SIGINT and the JAX preemption sync point, turned into "save and stop".

A single-process run installs handlers for SIGTERM and SIGINT that only set a flag; the train
loop checks it after every step, saves that step, waits for the save to commit and returns.
Further signals while it does so are logged and ignored (SIGKILL still stops at once).

A multi-process run must stop at the same step on every host, so it does not read local
signals: SIGTERM is left to the JAX distributed runtime's preemption notifier, which announces a
preemption sync point that `Checkpointer.reached_preemption(step)` reports at the same step on
every host (Cloud TPU maintenance events arrive the same way). SIGINT keeps its default there
(the run dies and resumes from its last checkpoint).
"""

from __future__ import annotations

import signal
import threading
import types

from absl import logging

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
  """Context manager: while active, SIGTERM/SIGINT ask the loop to save and stop.

  Args:
    listen: install the signal handlers (single-process runs in the main thread); with False
      `requested` stays False.
  """

  def __init__(self, listen: bool):
    self.requested = False
    self.signal_name = ""
    self._listen = listen and threading.current_thread() is threading.main_thread()
    self._previous: dict[int, object] = {}

  def _handle(self, signum: int, frame: types.FrameType | None) -> None:
    del frame
    name = signal.Signals(signum).name
    if self.requested:
      logging.warning("%s received while already stopping: ignored; the run saves and exits "
                      "(SIGKILL stops without saving).", name)
      return
    self.requested, self.signal_name = True, name
    logging.warning("%s received: finishing the current step, then saving and exiting.", name)

  def __enter__(self) -> "StopRequest":
    if self._listen:
      for sig in _SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()
