"""Renders every transform's effect on one clip into a PNG (waveform + log spectrogram).

  python -m ssc_jax.augment.render --out=augment.png [--audio=FILE] [--severity=2] [--seed=0]

Without --audio a synthetic 2.7 s clip is used (two harmonic notes, a chord, clicks, a little
noise). Each row applies one transform with its probability forced to 1, at the chosen
severity (the corruptions have fixed parameters); the first row is the input.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import jax
import numpy as np

from configs import augment as augment_defaults
from data_pipelines import conventions
from ssc_jax.augment import pipeline
from ssc_jax.augment import registry

SAMPLE_RATE = conventions.SAMPLE_RATE
VIEW_SECONDS = conventions.VIEW_LENGTH / conventions.SAMPLE_RATE  # 2.7 s.


def synthetic_clip(sample_rate: int = SAMPLE_RATE, seconds: float = VIEW_SECONDS,
                   seed: int = 0) -> np.ndarray:
  """A deterministic test clip [T] float32: notes with harmonics, a chord, clicks, noise."""
  n = int(seconds * sample_rate)
  t = np.arange(n) / sample_rate
  y = np.zeros(n)
  events = [(196.0, 0.05, 0.8), (293.7, 0.9, 0.7), (261.6, 1.7, 0.9), (329.6, 1.7, 0.9),
            (392.0, 1.7, 0.9)]
  for f0, onset, dur in events:
    env = np.clip((t - onset) / 0.01, 0, 1) * np.exp(-np.clip(t - onset, 0, None) * 3)
    env *= t < onset + dur
    for h in range(1, 10):
      y += env * np.sin(2 * np.pi * f0 * h * t) / h
  for onset in (0.5, 1.3, 2.2):  # Clicks.
    i = int(onset * sample_rate)
    if i + 200 <= n:
      y[i:i + 200] += np.random.default_rng(seed).normal(size=200) * np.hanning(200)
  y += 0.003 * np.random.default_rng(seed + 1).normal(size=n)
  return (0.25 * y / np.max(np.abs(y))).astype(np.float32)


def load_clip(path: str, sample_rate: int = SAMPLE_RATE,
              seconds: float = VIEW_SECONDS) -> np.ndarray:
  """The first `seconds` of an audio file, mono, at `sample_rate`, float32 [T]."""
  import soundfile as sf
  audio, sr = sf.read(path, dtype="float32", always_2d=True)
  audio = audio.mean(axis=1)
  if sr != sample_rate:
    import librosa
    audio = librosa.resample(audio, orig_sr=sr, target_sr=sample_rate)
  n = int(seconds * sample_rate)
  return np.pad(audio[:n], (0, max(0, n - len(audio)))).astype(np.float32)


def forced_config(name: str, severity: int):
  """An `augment` config applying only `name`, always (compose and per-view p = 1)."""
  c = augment_defaults.defaults()
  c.chain = (name,)
  c.severity = severity
  c.compose_p = 1.0
  c[registry.ENTRIES[name].section.name].p = 1.0
  return c


def render_rows(clip: np.ndarray, severity: int, seed: int,
                names: Sequence[str] = registry.TRANSFORM_NAMES) -> list[tuple[str, np.ndarray]]:
  """[(label, audio [T])]: the input, then each named transform applied to it."""
  rows = [("input", clip)]
  audio = jax.numpy.asarray(clip)[None, None, :]
  for i, name in enumerate(names):
    fn = jax.jit(pipeline.make_augment_fn(forced_config(name, severity), SAMPLE_RATE))
    rows.append((name, np.asarray(fn(jax.random.fold_in(jax.random.key(seed), i), audio))[0, 0]))
  return rows


def _log_spectrogram(y: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
  frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, (n_fft // 2, n_fft // 2)),
                                                   n_fft)[::hop]
  power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1)) ** 2
  return 10 * np.log10(power.T + 1e-10)


def save_figure(rows: list[tuple[str, np.ndarray]], out: str, severity: int) -> None:
  """Draws waveform and log spectrogram per row into `out` (PNG)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(len(rows), 2, figsize=(12, 1.5 * len(rows)),
                           gridspec_kw={"width_ratios": [1, 1.4]}, squeeze=False)
  peak = max(np.max(np.abs(y)) for _, y in rows) or 1.0
  top = max(np.max(_log_spectrogram(y)) for _, y in rows)
  for (label, y), (ax_w, ax_s) in zip(rows, axes):
    t = np.arange(len(y)) / SAMPLE_RATE
    ax_w.plot(t, y, lw=0.4)
    ax_w.set_ylim(-peak, peak)
    ax_w.set_xlim(0, t[-1])
    ax_w.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    ax_s.imshow(_log_spectrogram(y), origin="lower", aspect="auto", cmap="magma",
                vmin=top - 80, vmax=top, extent=(0, t[-1], 0, SAMPLE_RATE / 2000))
    ax_s.set_ylabel("kHz", fontsize=7)
    for ax in (ax_w, ax_s):
      ax.tick_params(labelsize=6)
  axes[0, 0].set_title(f"waveform (severity {severity})", fontsize=9)
  axes[0, 1].set_title("log power spectrogram (80 dB range)", fontsize=9)
  fig.tight_layout()
  fig.savefig(out, dpi=80)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="PNG file to write.")
  parser.add_argument("--audio", default="", help="Audio file (default: synthetic clip).")
  parser.add_argument("--severity", type=int, default=2, help="0..4 (default 2).")
  parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the draws.")
  parser.add_argument("--only", default="", help="Comma-separated transform names (default all).")
  args = parser.parse_args(argv)
  if not 1 <= args.severity <= 4:
    parser.error("--severity must be in 1..4 (0 is the identity).")
  names = tuple(n for n in args.only.split(",") if n) or registry.TRANSFORM_NAMES
  try:
    registry.check_names(names)
  except ValueError as e:
    parser.error(str(e))
  clip = load_clip(args.audio) if args.audio else synthetic_clip(seed=args.seed)
  save_figure(render_rows(clip, args.severity, args.seed, names), args.out, args.severity)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
