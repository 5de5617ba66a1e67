"""Audio file -> mono int16 PCM at 22050 Hz, or a clear reason why the file is skipped.

This is the only place where audio files are decoded. The dataset builders call
`decode_file` for every file they list; a file that fails raises `DecodeError`, whose
`reason` goes into the split's skip report (see `builders/base.py`). Nothing is ever
zero-filled: a file is either decoded completely or skipped.

Rules, in the order they are checked (the first that applies gives the reason):
  1. missing file, or a file of 0 bytes;
  2. soundfile (libsndfile: WAV, FLAC, OGG, MP3, AIFF, AU, ...) cannot read it, and neither
     can librosa (its audioread fallback, which needs ffmpeg or similar installed);
  3. no frames at all;
  4. truncated: the header (WAV 'data' chunk, MP3 Xing/Info frame count, ...) declares more
     frames than could be decoded, by more than max(8192, 1%) frames (the slack absorbs MP3
     encoder padding and frame-count estimates); a truncated FLAC fails at rule 2;
  5. non-finite samples (NaN or Inf, possible in float WAV files);
  6. after mixing to mono (channel mean) and resampling with soxr (quality "HQ"), fewer than
     `min_samples` samples (default: one view, 59535 = 2.7 s at 22050 Hz).
Silence is valid audio and is kept. Float samples outside [-1, 1] are clipped when
converted to int16 (scale 32768, so 16-bit sources round-trip exactly).
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np
import soundfile as sf
import soxr

from data_pipelines import conventions

SAMPLE_RATE = conventions.SAMPLE_RATE  # Hz, the rate every prepared dataset stores.
DEFAULT_MIN_SAMPLES = conventions.VIEW_LENGTH  # One view.
INT16_SCALE = 32768.0  # float = int16 / INT16_SCALE.
_TRUNCATION_SLACK_FRAMES = 8192
_TRUNCATION_SLACK_FRACTION = 0.01


class DecodeError(Exception):
  """A file that cannot be used; `reason` is a one-line explanation for the skip report."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = path
    self.reason = reason


def read_audio(path: str) -> tuple[np.ndarray, int]:
  """Reads an audio file as float32, without any resampling or mixing.

  soundfile is tried first; librosa (whose fallback is audioread) second.

  Args:
    path: audio file path.

  Returns:
    (samples [frames, channels] float32, native sample rate in Hz).

  Raises:
    DecodeError: missing, empty, undecodable, frameless or truncated file.
  """
  if not os.path.isfile(path):
    raise DecodeError(path, "missing file")
  if os.path.getsize(path) == 0:
    raise DecodeError(path, "empty file (0 bytes)")
  declared = None
  try:
    declared = _wav_declared_frames(path) or sf.info(path).frames
    data, sr = sf.read(path, dtype="float32", always_2d=True)
  except Exception as sf_error:  # pylint: disable=broad-except
    data, sr = _read_with_librosa(path, sf_error)
  if data.shape[0] == 0 or data.shape[1] == 0:
    raise DecodeError(path, "no audio frames")
  if declared is not None and 0 < declared < 2**62:
    slack = max(_TRUNCATION_SLACK_FRAMES, int(_TRUNCATION_SLACK_FRACTION * declared))
    if declared - data.shape[0] > slack:
      raise DecodeError(
          path, f"truncated: header declares {declared} frames, only {data.shape[0]} decoded")
  return data, int(sr)


def _wav_declared_frames(path: str) -> int | None:
  """Frames declared by a RIFF/WAVE header's 'data' chunk, else None.

  libsndfile shrinks a WAV's frame count to what the file holds, so a truncated WAV is only
  visible in its header.
  """
  with open(path, "rb") as f:
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
      return None
    block_align = None
    while True:
      chunk = f.read(8)
      if len(chunk) < 8:
        return None
      size = struct.unpack("<I", chunk[4:])[0]
      if chunk[:4] == b"fmt ":
        fmt = f.read(size + (size & 1))
        if len(fmt) >= 14:
          block_align = struct.unpack("<H", fmt[12:14])[0]
      elif chunk[:4] == b"data":
        if not block_align or size in (0, 0xFFFFFFFF):
          return None  # Unknown or streaming-style size: nothing to compare with.
        return size // block_align
      else:
        f.seek(size + (size & 1), os.SEEK_CUR)


def _read_with_librosa(path: str, sf_error: Exception) -> tuple[np.ndarray, int]:
  """The fallback decoder; raises DecodeError naming both failures."""
  try:
    import librosa  # pylint: disable=g-import-not-at-top  (slow import, only needed here)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      y, sr = librosa.load(path, sr=None, mono=False)
  except Exception as lr_error:  # pylint: disable=broad-except
    raise DecodeError(
        path, f"undecodable (soundfile: {_one_line(sf_error)}; librosa: {_one_line(lr_error)})"
    ) from None
  y = np.asarray(y, dtype=np.float32)
  data = y[:, None] if y.ndim == 1 else y.T  # librosa gives [channels, frames].
  return data, int(sr)


def _one_line(error: Exception) -> str:
  text = " ".join(str(error).split()) or type(error).__name__
  return text[:200]


def to_mono(data: np.ndarray) -> np.ndarray:
  """Channel mean. data: [frames, channels] -> [frames] float32."""
  return data.mean(axis=1, dtype=np.float32)


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
  """soxr "HQ" resampling. x: [n] float32 -> [≈ n·sr_out/sr_in] float32 (soxr rounds up)."""
  if sr_in == sr_out:
    return x.astype(np.float32, copy=False)
  return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def float_to_int16(x: np.ndarray) -> np.ndarray:
  """[n] float in [-1, 1] -> [n] int16 (scale 32768, clipped)."""
  return np.clip(np.round(x * INT16_SCALE), -32768, 32767).astype(np.int16)


def decode_file(path: str, *, sample_rate: int = SAMPLE_RATE,
                min_samples: int = DEFAULT_MIN_SAMPLES) -> np.ndarray:
  """Decodes one file to the stored format.

  Args:
    path: audio file path.
    sample_rate: output rate in Hz.
    min_samples: shortest accepted output, in samples at `sample_rate`.

  Returns:
    [n] int16 mono PCM at `sample_rate`, n >= min_samples.

  Raises:
    DecodeError: the file must be skipped; `reason` says why.
  """
  data, sr = read_audio(path)
  finite = np.isfinite(data)
  if not finite.all():
    raise DecodeError(path, f"non-finite samples ({int((~finite).sum())} NaN/Inf values)")
  mono = resample(to_mono(data), sr, sample_rate)
  if mono.shape[0] < min_samples:
    raise DecodeError(
        path, f"too short: {mono.shape[0]} samples at {sample_rate} Hz "
        f"({mono.shape[0] / sample_rate:.2f} s) < {min_samples}")
  return float_to_int16(mono)
