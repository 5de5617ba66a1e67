"""Pitch-shift quality: our phase-locked vocoder (75 % and 50 % overlap) vs torch-pitch-shift.

Each shifter transposes test signals whose ideal transposition is known in closed form (sums
of partials, every frequency times the ratio), and the result is compared with the ideal by
the log-spectral distance

  LSD = mean over frames of sqrt(mean over bins of (10 log10 P_out - 10 log10 P_ideal)^2)  [dB]

on Hann STFTs of 2048 samples, hop 512, powers floored at 70 dB below the ideal's peak (so
that silence-level differences do not dominate), over the middle 80 % of the view. Lower is
better; 0 is the ideal. Two signals, 2.7 s at 22,050 Hz:
  * chord: two sustained harmonic notes (A3 and C#4, 10 partials at 1/k amplitude);
  * plucks: a sequence of 8 harmonic notes with sharp onsets and exponential decays (tests
    the smearing of transients).
The ratios are the 14 "fast" transpositions of severity 2 (±0.35 … ±3.16 semitones).

The peer is torch-pitch-shift as torch-audiomentations calls it (resample, then torchaudio's
phase vocoder with a 344-sample rectangular window and a 10-sample hop), run in the throwaway
venv of bench/augment.py.

Run:
  .venv/bin/python bench/pitch_quality.py [--peer_python=/tmp/ssc_bench_aug/bin/python]
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import subprocess
import sys
import tempfile
import textwrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from data_pipelines import conventions  # noqa: E402
from ssc_jax.augment import pitch  # noqa: E402

SR = conventions.SAMPLE_RATE
T = conventions.VIEW_LENGTH

PEER_SCRIPT = textwrap.dedent("""
    import fractions, json, sys
    import numpy as np, torch
    from torch_pitch_shift import pitch_shift
    torch.set_num_threads(1)
    signals = np.load(sys.argv[1])
    ratios = json.loads(sys.argv[2])
    out = {}
    for name in signals.files:
      x = torch.from_numpy(signals[name])[None, None]
      for num, den in ratios:
        y = pitch_shift(x, fractions.Fraction(num, den), %(sr)d)[0, 0].numpy()
        out[f"{name}/{num}/{den}"] = y
    np.savez(sys.argv[3], **out)
""")


def _partials(f0: float, count: int = 10) -> list[tuple[float, float]]:
  return [(k * f0, 1.0 / k) for k in range(1, count + 1)]


def synth(kind: str, ratio: float = 1.0) -> np.ndarray:
  """The test signal `kind` with every frequency times `ratio` (partials past 0.98 Nyquist
  dropped), [T] float32, peak ~0.5."""
  t = np.arange(T) / SR
  y = np.zeros(T)
  rng = np.random.default_rng(0)
  if kind == "chord":
    for f0 in (220.0, 277.18):
      for f, a in _partials(f0):
        if f * ratio < 0.98 * SR / 2:
          y += a * np.sin(2 * np.pi * f * ratio * t + rng.uniform(0, 2 * np.pi))
  else:  # plucks
    notes = [196.0, 246.94, 293.66, 392.0, 329.63, 261.63, 220.0, 164.81]
    step = T // len(notes)
    for i, f0 in enumerate(notes):
      start = i * step
      tt = t[start:] - t[start]
      env = np.exp(-tt / 0.25)
      for f, a in _partials(f0):
        if f * ratio < 0.98 * SR / 2:
          y[start:] += a * env * np.sin(2 * np.pi * f * ratio * tt + rng.uniform(0, 2 * np.pi))
  return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def _power(x: np.ndarray) -> np.ndarray:
  n_fft, hop = 2048, 512
  frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
  return np.abs(np.fft.rfft(frames, axis=-1)) ** 2


def _fit(y: np.ndarray) -> np.ndarray:
  """Cropped or zero-padded to T samples, as torch-audiomentations does."""
  return np.pad(y[:T], (0, max(0, T - len(y))))


def lsd_db(y: np.ndarray, ideal: np.ndarray) -> float:
  """Log-spectral distance (dB) of y to ideal over the middle 80 % of the view."""
  lo, hi = int(0.1 * T), int(0.9 * T)
  p, q = _power(y[lo:hi]), _power(ideal[lo:hi])
  floor = q.max() * 10 ** -7
  d = 10 * np.log10(np.maximum(p, floor)) - 10 * np.log10(np.maximum(q, floor))
  return float(np.mean(np.sqrt(np.mean(d * d, axis=-1))))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--peer_python", default="/tmp/ssc_bench_aug/bin/python")
  parser.add_argument("--n_fft", type=int, default=1024)
  args = parser.parse_args()
  ratios = pitch.fast_ratios(SR, 4.0)
  fracs = [fractions.Fraction(r).limit_denominator(SR) for r in ratios]
  kinds = ("chord", "plucks")
  signals = {k: synth(k) for k in kinds}
  results: dict[str, dict[str, list[float]]] = {}
  for overlap in (4, 2):
    fn = jax.jit(lambda x, r, o=overlap: pitch.pitch_shift(x, pitch.PitchShiftParams(r),
                                                           args.n_fft, o))
    name = f"ours, {100 - 100 // overlap} % overlap"
    results[name] = {k: [lsd_db(np.asarray(fn(jnp.asarray(signals[k]), jnp.float32(r))),
                                synth(k, r)) for r in ratios] for k in kinds}
  if os.path.exists(args.peer_python):
    with tempfile.TemporaryDirectory() as tmp:
      np.savez(os.path.join(tmp, "in.npz"), **signals)
      subprocess.run([args.peer_python, "-W", "ignore", "-c", PEER_SCRIPT % {"sr": SR},
                      os.path.join(tmp, "in.npz"),
                      json.dumps([(f.numerator, f.denominator) for f in fracs]),
                      os.path.join(tmp, "out.npz")], check=True)
      out = np.load(os.path.join(tmp, "out.npz"))
      results["torch-pitch-shift (the original)"] = {
          k: [lsd_db(_fit(out[f"{k}/{f.numerator}/{f.denominator}"]), synth(k, r))
              for f, r in zip(fracs, ratios)] for k in kinds}
  else:
    print(f"peer skipped: {args.peer_python} not found (see bench/augment.py)")
  print(f"log-spectral distance to the ideal transposition, dB (lower is better), "
        f"{len(ratios)} ratios; n_fft {args.n_fft}")
  print(f"{'':36s}" + "".join(f"{k + ' mean':>14s}{k + ' max':>13s}" for k in kinds))
  for name, per_kind in results.items():
    print(f"{name:36s}" + "".join(f"{np.mean(v):14.2f}{np.max(v):13.2f}"
                                  for v in per_kind.values()))


if __name__ == "__main__":
  main()
