"""Every cell of the spec's severity table (§5.2) against `severity.resolve`.

The expected values are typed in from the spec's table and its per-tier lists (s = 0.5, 1,
1.5, 2), not computed from the formulas the module uses, so a wrong formula, a wrong clamp
or a mis-wired field fails here.
"""

import math

import pytest

from configs import augment as augment_defaults
from ssc_jax.augment import pitch
from ssc_jax.augment import severity

SR = 22050
MS = SR / 1000  # Samples per millisecond.

# severity -> the spec's values: compose p; gain p, dB range; polarity p; noise p, SNR range,
# decay range; filters p, min bandwidth (max 1.99), high-pass range, low-pass range; pitch p,
# max semitones, number of discrete ratios; delay p, first delay in samples, v, R, a pairs.
SPEC = {
    1: dict(compose=0.4, gain=(0.2, -7.5, 2.5), polarity=0.3, noise=(0.3, 6.0, 60.0, -1.0, 1.0),
            filters=(0.15, 0.25, 100.0, 1200.0, 300.0, 7500.0), pitch=(0.3, 2.0, 8),
            delay=(0.3, int(200 * MS), (0.05, 0.45), (0, 2), (0.05, 0.45))),
    2: dict(compose=0.8, gain=(0.4, -15.0, 5.0), polarity=0.6, noise=(0.6, 3.0, 30.0, -2.0, 2.0),
            filters=(0.3, 0.5, 200.0, 2400.0, 150.0, 7500.0), pitch=(0.6, 4.0, 14),
            delay=(0.6, 2205, (0.3, 0.7), (1, 3), (0.3, 0.7))),
    3: dict(compose=1.0, gain=(0.6, -22.5, 7.5), polarity=0.8, noise=(0.8, 2.0, 20.0, -3.0, 3.0),
            filters=(0.45, 0.75, 300.0, 3600.0, 100.0, 5000.0), pitch=(0.75, 6.0, 24),
            delay=(0.6, int(1000 / 15 * MS), (0.55, 0.95), (2, 4), (0.55, 0.95))),
    4: dict(compose=1.0, gain=(0.7, -30.0, 10.0), polarity=0.8, noise=(0.8, 1.5, 15.0, -4.0, 4.0),
            filters=(0.6, 1.0, 400.0, 4800.0, 75.0, 3750.0), pitch=(0.75, 8.0, 32),
            delay=(0.6, int(50 * MS), (0.8, 1.2), (3, 5), (0.8, 1.2))),
}


def _resolved(level: int) -> severity.Settings:
  config = augment_defaults.defaults()
  config.severity = level
  return severity.resolve(config, SR)


def _close(actual, expected) -> bool:
  return all(math.isclose(a, e, rel_tol=1e-9, abs_tol=1e-9) for a, e in zip(actual, expected))


@pytest.mark.parametrize("level", sorted(SPEC))
def test_every_cell_of_the_severity_table(level):
  spec, st = SPEC[level], _resolved(level)
  assert math.isclose(st.compose_p, spec["compose"])
  assert _close((st.gain.p, st.gain.min_db, st.gain.max_db), spec["gain"])
  assert math.isclose(st.polarity_inversion.p, spec["polarity"])
  n = st.colored_noise
  assert _close((n.p, n.min_snr_db, n.max_snr_db, n.min_decay, n.max_decay), spec["noise"])
  f = st.filtering
  assert _close((f.p, f.min_bandwidth, f.highpass_min_hz, f.highpass_max_hz, f.lowpass_min_hz,
                 f.lowpass_max_hz), spec["filters"])
  assert (f.center_min_hz, f.center_max_hz, f.max_bandwidth) == (200.0, 4000.0, 1.99)
  ps = st.pitch_shift
  p, max_semitones, n_ratios = spec["pitch"]
  assert _close((ps.p, ps.max_semitones), (p, max_semitones))
  assert len(pitch.fast_ratios(SR, ps.max_semitones)) == n_ratios
  d = st.delay
  p, first, volumes, repeats, attenuations = spec["delay"]
  assert math.isclose(d.p, p)
  assert (d.min_samples, d.max_samples) == (first, int(500 * MS))
  assert _close(d.volumes, volumes) and tuple(d.repeats) == repeats
  assert _close(d.attenuations, attenuations)


def test_default_transpositions_are_the_spec_semitones():
  """s = 1: 14 ratios, +-{0.35, 1.19, 1.47, 1.82, 2.67, 3.02, 3.16} semitones (spec §5.2)."""
  semitones = sorted(round(12 * math.log2(r), 2) for r in pitch.fast_ratios(SR, 4.0))
  expected = [0.35, 1.19, 1.47, 1.82, 2.67, 3.02, 3.16]
  assert semitones == sorted([-s for s in expected] + expected)


def test_corruption_defaults_are_the_spec_parameters():
  """§5.3: fixed parameters, p = 1 each, whatever the severity."""
  st = _resolved(4)
  assert (st.timestretch.min_rate, st.timestretch.max_rate) == (0.7, 1.3)
  assert (st.splice.num_intervals, st.splice.max_width_s) == (8, 0.1)
  assert (st.reverb.room_size, st.reverb.wet_level, st.reverb.dry_level) == (1.0, 1.0, 1.0)
  assert (st.chorus.rate_hz, st.chorus.depth, st.chorus.mix) == (5.0, 1.0, 1.0)
  assert st.distortion.drive_db == 9.0
  assert (st.compression.threshold_db, st.compression.ratio) == (-30.0, 5.0)
  assert st.bitcrush.bits == 4
  names = ("timestretch", "splice", "reverb", "chorus", "distortion", "compression", "reverse",
           "bitcrush", "mp3")
  assert [getattr(st, n).p for n in names] == [1.0] * len(names)
