"""Helpers shared by the builder tests: fake audio files, building, reading back.

Imported by tests/test_builders_*.py; holds no tests itself.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds

from data_pipelines import builders  # noqa: F401  (registers the builders)
from data_pipelines.builders import base

SR = 22050
MIN_SAMPLES = 2000  # Tests keep clips short; the real default is one view (59535).
_FORMATS = {".mp3": "MP3", ".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".au": "AU"}


def write_audio(path: os.PathLike, seconds: float = 0.25, sr: int = SR, channels: int = 1,
                freq: float = 440.0, amplitude: float = 0.3) -> pathlib.Path:
  """Writes a sine (one per channel, slightly detuned) in the format given by the suffix."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  t = np.arange(int(round(seconds * sr))) / sr
  data = np.stack([amplitude * np.sin(2 * np.pi * (freq + 10 * c) * t)
                   for c in range(channels)], axis=1).astype(np.float32)
  fmt = _FORMATS[path.suffix.lower()]
  subtype = "PCM_16" if fmt in ("WAV", "AU", "FLAC") else None
  sf.write(path, data if channels > 1 else data[:, 0], sr, format=fmt, subtype=subtype)
  return path


def write_corrupt(path: os.PathLike) -> pathlib.Path:
  """A file with the right name but no decodable audio."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"this is not audio" * 10)
  return path


def build(name: str, manual_dir: os.PathLike, data_dir: os.PathLike,
          min_samples: int = MIN_SAMPLES) -> tfds.core.DatasetBuilder:
  """Prepares `name` ("name/config") from manual_dir; returns the builder."""
  builder = tfds.builder(name, data_dir=os.fspath(data_dir), min_samples=min_samples,
                         num_workers=2, progress=False)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return builder


def examples(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, dict]:
  """track_id -> example (numpy) of one split."""
  out = {}
  for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
    track_id = ex["track_id"].decode()
    assert track_id not in out, f"duplicate track_id {track_id}"
    out[track_id] = ex
  return out


def skipped(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, str]:
  """path -> reason, from the split's skip report."""
  report = pathlib.Path(os.fspath(builder.data_path)) / base.SKIP_REPORT_PATTERN.format(split=split)
  assert report.exists(), f"no skip report {report}"
  return dict(base.read_skip_report(report))


def split_sizes(builder: tfds.core.DatasetBuilder) -> dict[str, int]:
  return {s: builder.info.splits[s].num_examples for s in builder.info.splits.keys()}
