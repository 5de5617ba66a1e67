"""Audio files and arrays → mono float32 at the model's rate, for the embedding CLI and API.

Decoding reuses `data_pipelines.decode` (soundfile first, librosa as a fallback; the same
rules that skip broken files when datasets are prepared); the channel mean makes it mono and
soxr ("HQ") resamples it. Nothing is normalised.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from data_pipelines import decode

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".au", ".aif", ".aiff",
                    ".m4a", ".wma", ".aac")

DecodeError = decode.DecodeError


def list_audio_files(paths: Iterable[str]) -> list[str]:
  """Expands folders (recursively, sorted) into audio files; files are kept as given.

  A folder contributes the files whose extension is in AUDIO_EXTENSIONS (case-insensitive);
  an explicitly named file is kept whatever its extension, and a path that does not exist is
  kept too (loading it then reports "missing file").
  """
  out = []
  for path in paths:
    path = os.path.expanduser(path)
    if os.path.isdir(path):
      found = []
      for root, dirs, files in os.walk(path):
        dirs.sort()
        found += [os.path.join(root, f) for f in files
                  if os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS]
      out += sorted(found)
    else:
      out.append(path)
  return out


def to_mono(waveform: np.ndarray) -> np.ndarray:
  """A waveform array → [L] float32 mono (channel mean).

  Layouts: [L] mono; [L, C] (soundfile's, frames first) or [C, L] (librosa's, channels
  first): the longer axis is taken as time.

  Raises:
    ValueError: not 1-D or 2-D, empty, or non-finite samples.
  """
  x = np.asarray(waveform)
  if x.ndim == 2:
    x = x.mean(axis=1 if x.shape[0] >= x.shape[1] else 0)
  if x.ndim != 1:
    raise ValueError(f"waveform must be [L], [L, C] or [C, L], got shape {np.shape(waveform)}.")
  if x.size == 0:
    raise ValueError("waveform is empty.")
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise ValueError("waveform contains NaN or Inf samples.")
  return x


def prepare_waveform(waveform: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
  """Any waveform array at `sample_rate` → [L'] float32 mono at `target_rate`."""
  if int(sample_rate) <= 0:
    raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate}.")
  return decode.resample(to_mono(waveform), int(sample_rate), int(target_rate))


def load_audio(path: str, target_rate: int) -> np.ndarray:
  """Decodes a file → [L] float32 mono at `target_rate`.

  Raises:
    DecodeError: the file is missing, empty, undecodable, truncated or has NaN/Inf samples
      (`reason` says which).
  """
  data, rate = decode.read_audio(path)
  if not np.all(np.isfinite(data)):
    raise DecodeError(path, "non-finite samples (NaN/Inf)")
  return decode.resample(decode.to_mono(data), rate, target_rate)
