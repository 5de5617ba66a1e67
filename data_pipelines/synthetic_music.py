"""`synthetic_music`: a music dataset that synthesises itself, for demos and tests.

Every clip is a short piece in one key (12 tonics x major/minor), played by one instrument
family in one register (low, middle or high), at a random tempo. It is a sequence of chords
(diatonic triads) and single notes drawn from the key's scale, at random loudness, plus a little
white noise. The register sets the octaves: chords are rooted in octave 2, 3 or 4 and single
notes lie in the two octaves above it. The first event
is always the tonic triad, and tonic, subdominant and dominant chords are favoured, so the key
(not only the scale, which relative keys share) is audible.

Instrument families, each a different synthesis method so that timbre is audible:

* `organ`: additive, drawbar-like harmonics 1, 2, 3, 4, 6, 8 with a flat envelope.
* `electric_piano`: two-operator FM (modulator at the carrier frequency) with a decaying
  modulation index, so the tone darkens as it decays.
* `plucked_string`: Karplus-Strong (a plucked-string shape through a damped, tuned delay-line
  loop).
* `bowed_string`: band-limited sawtooth with 5-6 Hz vibrato and a slow attack.
* `reed`: odd harmonics (clarinet-like) with a breathy attack.

Features:

* `audio`: `tfds.features.Tensor(shape=(None,), dtype=int16)`, mono PCM at 22050 Hz (also in
  `info.metadata["sample_rate"]`), stored as raw bytes (`Encoding.BYTES`, 2 bytes per sample;
  the default encoding would widen every sample to a 64-bit varint); decodes to int16 [L].
* `track_id`: text, `"synthetic_music/<config>/<split>/<index>"`.
* `key`: ClassLabel with 24 names, `"C major"` ... `"B major"` (ids 0-11), then `"C minor"` ...
  `"B minor"` (ids 12-23).
* `instrument`: ClassLabel over the family names above.
* `register`: ClassLabel `"low"`, `"middle"`, `"high"`: the octave the clip is played in
  (chord roots C2-B2, C3-B3 or C4-B4; single notes one to two octaves higher).
* `pitch_classes`: float32 [12] multi-hot of the pitch classes (C=0 ... B=11) of every note
  that starts inside the clip.

`info.metadata` follows the convention of `data_pipelines/builders/base.py`: `sample_rate`,
`min_samples`, `labels` ({key: {kind, names}}), `skipped` and `num_samples` (per split).

Splits: `train` (the labeled pool), `unlabeled` (same generator, meant to be used without its
labels), `validation`, `test`. Keys and instruments are balanced within each split.

Everything is derived from the config's `seed`, the split and the example index through NumPy's
`SeedSequence`, so a build is reproducible and independent of generation order. Nothing is
downloaded: `tfds.builder("synthetic_music/demo").download_and_prepare()` works offline.

Configs:

* `demo`: 6.5 s clips (room for two adjacent 2.7 s views plus slack); 256 train, 256
  unlabeled, 128 validation, 128 test.
* `tiny`: 6 s clips, 8 / 8 / 4 / 4 clips; for tests and smoke runs.
"""

from __future__ import annotations

from concurrent import futures
import dataclasses
import os
from typing import Iterator, Sequence

import numpy as np
from scipy import signal
import tensorflow_datasets as tfds

from data_pipelines import conventions



SAMPLE_RATE = conventions.SAMPLE_RATE
PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES = ("major", "minor")
KEY_NAMES = tuple(f"{pc} {mode}" for mode in MODES for pc in PITCH_CLASS_NAMES)
INSTRUMENT_NAMES = ("organ", "electric_piano", "plucked_string", "bowed_string", "reed")
REGISTER_NAMES = ("low", "middle", "high")
SPLIT_NAMES = ("train", "unlabeled", "validation", "test")

# Scale intervals in semitones above the tonic (natural minor for the minor mode).
SCALES = {
    "major": np.array([0, 2, 4, 5, 7, 9, 11]),
    "minor": np.array([0, 2, 3, 5, 7, 8, 10]),
}
# Chord roots by scale degree (0 = tonic); I, IV and V are favoured so the tonic is salient.
_CHORD_DEGREE_WEIGHTS = np.array([4.0, 1.0, 1.0, 2.5, 3.0, 1.0, 0.5])
_CHORD_DEGREE_P = _CHORD_DEGREE_WEIGHTS / _CHORD_DEGREE_WEIGHTS.sum()
_MIN_MIDI, _MAX_MIDI = 36, 100  # C2 (65 Hz) to E7 (2637 Hz).
_NOISE_STD = 0.002  # White noise, in units of full scale (about -54 dBFS).


def key_index(tonic: int, mode: str) -> int:
  """Returns the `key` class id of a tonic pitch class (0-11) and mode ('major'/'minor')."""
  return MODES.index(mode) * 12 + tonic


def key_scale(key: int) -> np.ndarray:
  """Returns the 7 pitch classes (int [7], tonic first) of the scale of `key` (0-23)."""
  tonic, mode = key % 12, MODES[key // 12]
  return (tonic + SCALES[mode]) % 12


def midi_to_hz(midi: np.ndarray | float) -> np.ndarray | float:
  """Equal temperament, A4 = MIDI 69 = 440 Hz."""
  return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


# ------------------------------------------------------------------------------------------------
# Note synthesis. Each function returns float64 [n] with peak about 1 for velocity 1.
# ------------------------------------------------------------------------------------------------


def _adsr(n: int, attack: float, release: float, sustain_n: int, sr: int) -> np.ndarray:
  """Linear attack, flat sustain for `sustain_n` samples in total, linear release after it."""
  env = np.ones(n)
  a = max(1, int(attack * sr))
  env[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
  r = max(1, int(release * sr))
  start = min(sustain_n, n)
  tail = np.linspace(1.0, 0.0, r)[: n - start]
  env[start:start + len(tail)] *= tail
  env[start + len(tail):] = 0.0
  return env


def _harmonic_stack(phase: np.ndarray, harmonics: Sequence[int], amps: Sequence[float],
                    f0: float, sr: int) -> np.ndarray:
  """Sum of amp * sin(h * phase) over the harmonics below 0.45 sr; phase: [n] radians.

  Uses the Chebyshev recurrence sin((h+1)x) = 2 cos(x) sin(hx) - sin((h-1)x) instead of one
  `np.sin` per harmonic (several times faster, exact up to rounding for these orders).
  """
  wanted = {int(h): np.float32(a) for h, a in zip(harmonics, amps) if h * f0 < 0.45 * sr}
  out = np.zeros(phase.shape, np.float32)
  if not wanted:
    return out.astype(np.float64)
  phase = np.mod(phase, 2 * np.pi)  # float32 is plenty once the phase is wrapped.
  two_cos = (2.0 * np.cos(phase)).astype(np.float32)
  prev, cur = np.zeros_like(out), np.sin(phase).astype(np.float32)
  for h in range(1, max(wanted) + 1):
    if h in wanted:
      out += wanted[h] * cur
    prev, cur = cur, two_cos * cur - prev
  return out.astype(np.float64)


def _organ(f0: float, dur_n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
  n = dur_n + int(0.08 * sr)
  t = np.arange(n) / sr
  amps = np.array([1.0, 0.6, 0.3, 0.25, 0.1, 0.08]) * rng.uniform(0.8, 1.2, 6)
  tone = _harmonic_stack(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi), (1, 2, 3, 4, 6, 8),
                         amps, f0, sr)
  return tone * _adsr(n, 0.01, 0.08, dur_n, sr) / amps.sum()


def _electric_piano(f0: float, dur_n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
  n = dur_n + int(0.4 * sr)
  t = np.arange(n) / sr
  index = rng.uniform(1.5, 3.0) * np.exp(-t / rng.uniform(0.15, 0.4))
  tone = np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * f0 * t))
  amp = np.exp(-t / rng.uniform(0.6, 1.2)) * _adsr(n, 0.003, 0.4, dur_n, sr)
  return tone * amp


def _comb_loop(x: np.ndarray, p: int, taps: Sequence[float]) -> np.ndarray:
  """The Karplus-Strong loop y[i] = x[i] + sum_j taps[j] * y[i - p - j] with y[<0] = 0.

  Args:
    x: float64 [n] excitation.
    p: shortest loop delay in samples (>= 1).
    taps: loop filter taps at delays p, p+1, ...

  Returns:
    float64 [n]. For long delays it runs block by block (n/p vectorised steps, exact because
    every delay is >= p); for short ones `scipy.signal.lfilter` is cheaper (cost ~ n·p).
  """
  k = len(taps)
  if p < 64:
    a = np.zeros(p + k)
    a[0] = 1.0
    a[p:p + k] = -np.asarray(taps, np.float64)
    return signal.lfilter([1.0], a, x)
  n = len(x)
  num_blocks = -(-n // p)
  xb = np.zeros(num_blocks * p)
  xb[:n] = x
  y = np.zeros(k + num_blocks * p)  # y[:k] holds y[-k..-1] = 0; y[k + i] holds sample i.
  for b in range(num_blocks):
    s = k + b * p
    block = xb[b * p:(b + 1) * p].copy()
    if b:
      for j, tap in enumerate(taps):
        block += tap * y[s - p - j:s - j]
    y[s:s + p] = block
  return y[k:k + n]


def _plucked_string(f0: float, dur_n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
  """Karplus-Strong with a tuned loop: one period of excitation through a damped delay line.

  The loop filter is the classic two-point average (half a sample of delay) convolved with a
  linear-interpolation fractional delay d, so the loop delay p + 1/2 + d equals sr / f0.
  """
  n = dur_n + int(0.3 * sr)
  delay = sr / f0 - 0.5
  p = max(1, int(np.floor(delay)))
  d = delay - p
  rho = rng.uniform(0.996, 0.999)
  taps = rho * np.array([0.5 * (1 - d), 0.5, 0.5 * d])
  # Initial loop contents: the triangular shape of a string plucked at a random point (its
  # harmonics fall as 1/h^2, so the fundamental dominates) plus a little noise for the attack.
  where = rng.uniform(0.1, 0.4)
  pos = np.arange(p + 1) / (p + 1)
  burst = np.where(pos < where, pos / where, (1 - pos) / (1 - where))
  burst = burst + 0.15 * signal.lfilter([0.5, 0.5], [1.0], rng.uniform(-1.0, 1.0, p + 1))
  x = np.zeros(n)
  x[:p + 1] = burst - burst.mean()
  y = _comb_loop(x, p, taps)
  y *= _adsr(n, 0.0, 0.3, dur_n, sr)
  return y / (np.abs(y[:p * 4]).max() + 1e-9)


def _bowed_string(f0: float, dur_n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
  n = dur_n + int(0.15 * sr)
  t = np.arange(n) / sr
  vib_rate, vib_depth = rng.uniform(5.0, 6.0), rng.uniform(0.002, 0.004)
  # Vibrato fades in, as a player's does.
  freq = f0 * (1 + vib_depth * np.minimum(t / 0.3, 1.0) * np.sin(2 * np.pi * vib_rate * t))
  phase = 2 * np.pi * np.cumsum(freq) / sr
  harmonics = np.arange(1, 16)
  tone = _harmonic_stack(phase, harmonics, 1.0 / harmonics, f0, sr)
  return tone * _adsr(n, 0.08, 0.15, dur_n, sr) / 1.8


def _reed(f0: float, dur_n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
  n = dur_n + int(0.06 * sr)
  t = np.arange(n) / sr
  harmonics = np.array([1, 3, 5, 7, 9, 11])
  phase = 2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi)
  tone = _harmonic_stack(phase, harmonics, 1.0 / harmonics, f0, sr)
  breath = rng.normal(0.0, 0.05, n) * np.exp(-t / 0.05)
  return (tone + breath) * _adsr(n, 0.03, 0.06, dur_n, sr) / 1.2


_SYNTHS = {
    "organ": _organ,
    "electric_piano": _electric_piano,
    "plucked_string": _plucked_string,
    "bowed_string": _bowed_string,
    "reed": _reed,
}


# ------------------------------------------------------------------------------------------------
# Clips.
# ------------------------------------------------------------------------------------------------


def _fold_midi(midi: int) -> int:
  """Moves a MIDI note by octaves into [_MIN_MIDI, _MAX_MIDI]."""
  while midi < _MIN_MIDI:
    midi += 12
  while midi > _MAX_MIDI:
    midi -= 12
  return midi


def render_clip(key: int, instrument: int, num_samples: int, rng: np.random.Generator,
                sr: int = SAMPLE_RATE, register: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Synthesises one clip.

  Args:
    key: key class id in [0, 24) (see `KEY_NAMES`).
    instrument: instrument class id in [0, len(INSTRUMENT_NAMES)).
    num_samples: clip length L in samples.
    rng: the clip's random generator (tempo, events, octaves, loudness, noise).
    sr: sample rate in Hz.
    register: register class id in [0, 3) (see `REGISTER_NAMES`): chord roots lie in octave
      2 + register (MIDI 36 + 12·register + tonic), single notes 1-2 octaves above that.

  Returns:
    audio: int16 [L] PCM.
    pitch_classes: float32 [12] multi-hot of the pitch classes of the notes started in the clip.
  """
  synth = _SYNTHS[INSTRUMENT_NAMES[instrument]]
  tonic, scale = key % 12, SCALES[MODES[key // 12]]
  beat_n = 60.0 / rng.uniform(70.0, 150.0) * sr
  mix = np.zeros(num_samples + 2 * sr)
  pcs = np.zeros(12, np.float32)
  pos, first = 0, True
  while pos < num_samples:
    velocity = rng.uniform(0.35, 1.0)
    if first or rng.random() < 0.5:  # A triad on a scale degree.
      degree = 0 if first else int(rng.choice(7, p=_CHORD_DEGREE_P))
      base = 12 * (3 + register) + tonic  # Tonic in octave 2 + register (MIDI 12·(o+1)).
      steps = degree + np.array([0, 2, 4])
      notes = [base + scale[s % 7] + 12 * (s // 7) for s in steps]
      dur_n = int(beat_n * rng.choice([2.0, 3.0, 4.0]))
      velocity *= 0.6  # Three notes together are about as loud as one.
    else:  # A single note.
      s = int(rng.integers(7))
      notes = [12 * (4 + register + int(rng.integers(2))) + tonic + scale[s]]
      dur_n = int(beat_n * rng.choice([1.0, 2.0]))
    first = False
    for midi in notes:
      midi = _fold_midi(int(midi))
      note = synth(float(midi_to_hz(midi)), dur_n, sr, rng)
      note = note[:len(mix) - pos]
      mix[pos:pos + len(note)] += velocity * rng.uniform(0.85, 1.0) * note
      pcs[midi % 12] = 1.0
    pos += dur_n
  audio = mix[:num_samples]
  audio = audio / (np.abs(audio).max() + 1e-9) * rng.uniform(0.25, 0.9)
  audio = audio + rng.normal(0.0, _NOISE_STD, num_samples)
  pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
  return pcm, pcs


# ------------------------------------------------------------------------------------------------
# TFDS builder.
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class SyntheticMusicConfig(tfds.core.BuilderConfig):
  """A size preset of `synthetic_music`.

  Attributes:
    clip_seconds: length of every clip in seconds.
    split_sizes: (split name, number of clips) for each of `SPLIT_NAMES`.
    seed: root seed; the same seed gives bit-identical clips.
  """
  clip_seconds: float = 6.5
  split_sizes: tuple[tuple[str, int], ...] = ()
  seed: int = 0


class SyntheticMusic(tfds.core.GeneratorBasedBuilder):
  """Synthesised notes and chords with key, instrument, register and pitch-class labels."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "First release.",
      "1.1.0": "A clip-level register label (low/middle/high) that sets the octaves.",
  }
  BUILDER_CONFIGS = [
      SyntheticMusicConfig(
          name="demo",
          description="6.5 s clips: 256 train, 256 unlabeled, 128 validation, 128 test.",
          clip_seconds=6.5,
          split_sizes=(("train", 256), ("unlabeled", 256), ("validation", 128), ("test", 128)),
          seed=20241111),
      SyntheticMusicConfig(
          name="tiny",
          description="6 s clips: 8 train, 8 unlabeled, 4 validation, 4 test (for tests).",
          clip_seconds=6.0,
          split_sizes=(("train", 8), ("unlabeled", 8), ("validation", 4), ("test", 4)),
          seed=7),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Synthetic music clips generated locally by ssc_jax: chords and notes from the "
            "scale of one of 24 keys, played by one of five synthesised instrument families "
            "(additive organ, FM electric piano, Karplus-Strong plucked string, vibrato bowed "
            "string, odd-harmonic reed) in one of three registers, at random tempo and "
            "loudness, with a little noise. Labels: key, instrument family, register and the "
            "multi-hot set of sounding pitch classes. Meant for demos and tests of music representation learning."),
        features=tfds.features.FeaturesDict({
            "audio": tfds.features.Tensor(
                shape=(None,), dtype=np.int16, encoding=tfds.features.Encoding.BYTES,
                doc=f"Mono PCM at {SAMPLE_RATE} Hz."),
            "track_id": tfds.features.Text(),
            "key": tfds.features.ClassLabel(names=KEY_NAMES),
            "instrument": tfds.features.ClassLabel(names=INSTRUMENT_NAMES),
            "register": tfds.features.ClassLabel(names=REGISTER_NAMES),
            "pitch_classes": tfds.features.Tensor(shape=(12,), dtype=np.float32),
        }),
        supervised_keys=None,
        citation=(
            "@misc{ssc_jax_synthetic_music,\n"
            "  title = {synthetic\\_music: a self-generating toy music dataset of ssc\\_jax},\n"
            "  note = {Synthesised locally; no recordings are used.},\n"
            "  year = {2024}\n"
            "}"),
        metadata=tfds.core.MetadataDict(self._metadata()),
    )

  def _metadata(self) -> dict:
    """The `info.metadata` shared by ssc_jax builders (see data_pipelines/builders/base.py)."""
    cfg = self.builder_config
    num_samples = int(round(cfg.clip_seconds * SAMPLE_RATE))
    return {
        "sample_rate": SAMPLE_RATE,
        "min_samples": num_samples,
        "labels": {
            "key": {"kind": conventions.MULTICLASS, "names": list(KEY_NAMES)},
            "instrument": {"kind": conventions.MULTICLASS, "names": list(INSTRUMENT_NAMES)},
            "register": {"kind": conventions.MULTICLASS, "names": list(REGISTER_NAMES)},
            "pitch_classes": {"kind": conventions.MULTILABEL, "names": list(PITCH_CLASS_NAMES)},
        },
        "skipped": {split: 0 for split, _ in cfg.split_sizes},
        # Every clip has the same length, so the on-disk order does not matter here.
        "num_samples": {split: [num_samples] * n for split, n in cfg.split_sizes},
    }

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    sizes = dict(self.builder_config.split_sizes)
    return {name: self._generate_examples(name, sizes[name]) for name in SPLIT_NAMES}

  def _generate_examples(self, split: str, num_clips: int) -> Iterator[tuple[str, dict]]:
    cfg = self.builder_config
    split_id = SPLIT_NAMES.index(split)
    num_samples = int(round(cfg.clip_seconds * SAMPLE_RATE))
    # Balanced labels: a seeded permutation of 0, 1, ..., K-1, 0, 1, ... per split.
    split_rng = np.random.default_rng([cfg.seed, split_id])
    keys = split_rng.permutation(np.arange(num_clips) % len(KEY_NAMES))
    instruments = split_rng.permutation(np.arange(num_clips) % len(INSTRUMENT_NAMES))
    registers = split_rng.permutation(np.arange(num_clips) % len(REGISTER_NAMES))

    def render(i: int) -> tuple[np.ndarray, np.ndarray]:
      return render_clip(int(keys[i]), int(instruments[i]), num_samples,
                         np.random.default_rng([cfg.seed, split_id, i, 1]),
                         register=int(registers[i]))

    # NumPy releases the GIL in the synthesis' array loops: render on every core, in order.
    with futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
      for i, (audio, pcs) in enumerate(pool.map(render, range(num_clips))):
        track_id = f"synthetic_music/{cfg.name}/{split}/{i:05d}"
        yield track_id, {
            "audio": audio,
            "track_id": track_id,
            "key": int(keys[i]),
            "instrument": int(instruments[i]),
            "register": int(registers[i]),
            "pitch_classes": pcs,
        }
