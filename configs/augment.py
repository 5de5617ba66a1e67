"""The `augment` config section: which transforms the train step applies, and how hard.

Plain data, the one home of the augmentation defaults: `configs/common.py` puts `defaults()`
under `config.augment`, and the library (`ssc_jax/augment/`, whose table of transforms is
`registry.py`) reads every value from such a section. Every field is overridable from the
command line, e.g.
  --config.augment.severity=3
  --config.augment.chain='("gain","pitch_shift","reverb")'
  --config.augment.pitch_shift.p=0.9
Fields left at None take the value the spec's severity table (spec §5.2, the `severity_row`
of each transform in ssc_jax/augment/registry.py) gives for `severity`; set them to override
one parameter at any severity.
"""

import ml_collections
from ml_collections import config_dict

# The original's pretraining chain (spec §5.2).
BASE_CHAIN = ("gain", "polarity_inversion", "colored_noise", "filtering", "pitch_shift", "delay")


def _section(**fields) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(fields)


def defaults() -> ml_collections.ConfigDict:
  """Returns the original's pretraining chain at severity 2, with every knob documented."""
  f = lambda: config_dict.placeholder(float)  # None = from the severity table.
  c = ml_collections.ConfigDict()
  # Transform names applied in this order (per view, each with its own p) inside one
  # per-item Compose gate. Valid: the 6 below, the single filters "band_pass", "band_stop",
  # "high_pass", "low_pass", and the corruptions "timestretch", "splice", "reverb", "chorus",
  # "distortion", "compression", "reverse", "bitcrush", "mp3". () = no augmentation.
  c.chain = BASE_CHAIN
  # severity_modifier, an int in 0..4; s = severity / 2 scales every range and probability of
  # the chain (spec §5.2). 0 = no augmentation at all.
  c.severity = 2
  # Probability that an item (all its N views) goes through the chain; None = min(1, 0.8 s).
  c.compose_p = f()
  # How the batch is computed (the draws are the same for all): "vmap" (one vectorised pass,
  # what accelerators run), "branch" (expensive transforms only on their gated-on views, in
  # branches: a single CPU device), "groups" (a loop over groups of views: several CPU
  # devices); "" = by backend, in that order.
  c.strategy = ""

  # --- The pretraining chain (spec §5.2); None = severity table. ---
  # Gain: p (min(0.7, 0.4 s)); dB drawn uniform in [min_db, max_db] ([-15 s, 5 s]).
  c.gain = _section(p=f(), min_db=f(), max_db=f())
  # Polarity inversion (x -> -x): p (min(0.8, 0.6 s)).
  c.polarity_inversion = _section(p=f())
  # Coloured noise: p (min(0.8, 0.6 s)); SNR dB uniform in [min, max] ([3/s, 30/s]);
  # amplitude-spectrum decay exponent uniform in [min_decay, max_decay] ([-2 s, 2 s]).
  c.colored_noise = _section(p=f(), min_snr_db=f(), max_snr_db=f(), min_decay=f(), max_decay=f())
  # OneOf(band-pass, band-stop, high-pass, low-pass) per item, then per view with p
  # (min(0.6, 0.3 s)). Band centre mel-uniform in [center_min_hz, center_max_hz] (200, 4000),
  # width fraction uniform in [min_bandwidth, max_bandwidth] (0.5 s, 1.99); high-pass cutoff
  # mel-uniform in [highpass_min_hz, highpass_max_hz] (200 s, min(sr/2, 2400 s)); low-pass in
  # [lowpass_min_hz, lowpass_max_hz] (max(75, 150/s), 7500 / max(1, s)).
  c.filtering = _section(p=f(), center_min_hz=f(), center_max_hz=f(), min_bandwidth=f(),
                         max_bandwidth=f(), highpass_min_hz=f(), highpass_max_hz=f(),
                         lowpass_min_hz=f(), lowpass_max_hz=f())
  # Pitch shift: p (min(0.75, 0.6 s)); ratio uniform over the original's discrete set within
  # +-max_semitones (4 s). n_fft: STFT frame (0 = ~46 ms); overlap: 2 (50 %, the default:
  # closer to the ideal shift than the original's shifter, see docs/augmentation.md) or 4
  # (75 %, ~2x the cost, less smearing).
  c.pitch_shift = _section(p=f(), max_semitones=f(), n_fft=0, overlap=2)
  # Delay (echo): p (min(0.6, 0.6 s)); delay uniform in [min_ms, max_ms] ([100 / s, 500]).
  # Volume, repeats and attenuation follow the severity table only.
  c.delay = _section(p=f(), min_ms=f(), max_ms=f())

  # --- Corruptions of the robustness tests (spec §5.3); fixed parameters, p = 1. ---
  # Time stretch, rate uniform in [min_rate, max_rate]; length kept.
  c.timestretch = _section(p=1.0, min_rate=0.7, max_rate=1.3)
  # Splice-out: num_intervals cuts of up to max_width_s each, faded joins, zero-padded end.
  c.splice = _section(p=1.0, num_intervals=8, max_width_s=0.1)
  # Freeverb (pedalboard.Reverb) parameters.
  c.reverb = _section(p=1.0, room_size=1.0, damping=0.5, wet_level=1.0, dry_level=1.0)
  # Modulated delay (pedalboard.Chorus): LFO rate, depth, centre delay, wet mix.
  c.chorus = _section(p=1.0, rate_hz=5.0, depth=1.0, centre_delay_ms=7.0, mix=1.0)
  # tanh distortion with drive_db of gain.
  c.distortion = _section(p=1.0, drive_db=9.0)
  # Compressor (pedalboard.Compressor): threshold, ratio, attack, release.
  c.compression = _section(p=1.0, threshold_db=-30.0, ratio=5.0, attack_ms=1.0,
                           release_ms=100.0)
  # Time reversal.
  c.reverse = _section(p=1.0)
  # pedalboard.Bitcrush(bit_depth=bits): round(x 2^bits) / 2^bits, no saturation.
  c.bitcrush = _section(p=1.0, bits=4)
  # MP3-like codec: low-pass, per-band SNR, and band drop threshold below the loudest band.
  c.mp3 = _section(p=1.0, lowpass_hz=7000.0, band_snr_db=9.0, band_floor_db=35.0)
  return c
