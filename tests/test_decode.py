"""decode.decode_file: formats, mixing, resampling, and every skip reason."""

import numpy as np
import pytest
import soundfile as sf

from data_pipelines import decode

SR = decode.SAMPLE_RATE
T = decode.DEFAULT_MIN_SAMPLES


def _sine(freq, seconds, sr, amp=0.5):
  t = np.arange(int(seconds * sr)) / sr
  return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x, sr):
  """Frequency of the largest FFT bin (Hann window), refined by parabolic interpolation."""
  spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
  k = int(np.argmax(spectrum[1:-1])) + 1
  a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-12)
  k += 0.5 * (a - c) / (a - 2 * b + c)
  return k * sr / len(x)


def test_int16_wav_at_target_rate_round_trips_exactly(tmp_path):
  rng = np.random.default_rng(0)
  pcm = rng.integers(-20000, 20000, size=T + 100, dtype=np.int16)
  path = tmp_path / "x.wav"
  sf.write(path, pcm, SR, subtype="PCM_16")
  out = decode.decode_file(str(path))
  assert out.dtype == np.int16
  np.testing.assert_array_equal(out, pcm)


@pytest.mark.parametrize("sr,ext,fmt", [(44100, ".wav", "WAV"), (48000, ".flac", "FLAC"),
                                        (44100, ".mp3", "MP3"), (48000, ".ogg", "OGG")])
def test_resampled_length_and_frequency(tmp_path, sr, ext, fmt):
  seconds, freq = 3.0, 1000.0
  path = tmp_path / f"x{ext}"
  sf.write(path, _sine(freq, seconds, sr), sr, format=fmt)
  out = decode.decode_file(str(path))
  expected = int(seconds * sr) * SR / sr
  tolerance = 1 if fmt in ("WAV", "FLAC") else 0.01 * expected  # Lossy codecs pad a little.
  assert abs(len(out) - expected) <= tolerance, (len(out), expected)
  middle = out[len(out) // 4: 3 * len(out) // 4].astype(np.float64) / 32768
  assert abs(_peak_hz(middle, SR) - freq) < 2.0


def test_stereo_is_mixed_to_the_channel_mean(tmp_path):
  left, right = _sine(440, 3.0, 44100, 0.4), _sine(440, 3.0, 44100, 0.2)
  path = tmp_path / "stereo.wav"
  sf.write(path, np.stack([left, right], 1), 44100, subtype="FLOAT")
  out = decode.decode_file(str(path)).astype(np.float64) / 32768
  rms = np.sqrt(np.mean(out[1000:-1000] ** 2))
  assert rms == pytest.approx(0.3 / np.sqrt(2), rel=1e-3)
  assert abs(_peak_hz(out, SR) - 440) < 1.0


def test_silent_but_valid_file_is_kept(tmp_path):
  path = tmp_path / "silence.wav"
  sf.write(path, np.zeros(T + 10, np.float32), SR, subtype="PCM_16")
  out = decode.decode_file(str(path))
  assert out.shape == (T + 10,) and not out.any()


def test_out_of_range_float_samples_are_clipped(tmp_path):
  path = tmp_path / "loud.wav"
  x = np.full(T, 1.5, np.float32)
  x[::2] = -1.5
  sf.write(path, x, SR, subtype="FLOAT")
  out = decode.decode_file(str(path))
  assert out.max() == 32767 and out.min() == -32768


def _reason(path, **kwargs):
  with pytest.raises(decode.DecodeError) as info:
    decode.decode_file(str(path), **kwargs)
  assert info.value.path == str(path)
  return info.value.reason


def test_missing_file(tmp_path):
  assert _reason(tmp_path / "nope.wav") == "missing file"


def test_empty_file(tmp_path):
  path = tmp_path / "empty.mp3"
  path.write_bytes(b"")
  assert _reason(path) == "empty file (0 bytes)"


def test_corrupt_file(tmp_path):
  path = tmp_path / "corrupt.wav"
  path.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
  assert _reason(path).startswith("undecodable (soundfile:")


@pytest.mark.parametrize("ext,fmt", [(".wav", "WAV"), (".mp3", "MP3")])
def test_truncated_file(tmp_path, ext, fmt):
  path = tmp_path / f"cut{ext}"
  sf.write(path, _sine(440, 6.0, SR), SR, format=fmt)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])  # The header still declares 6 s = 132300 frames.
  reason = _reason(path)
  assert reason.startswith("truncated: header declares 132300 frames"), reason


def test_shorter_than_one_view(tmp_path):
  path = tmp_path / "short.flac"
  sf.write(path, _sine(440, 2.0, 44100), 44100)  # 44100 samples at 22050 Hz < 59535.
  assert _reason(path).startswith("too short: 44100 samples")
  assert decode.decode_file(str(path), min_samples=44100).shape == (44100,)


def test_non_finite_samples(tmp_path):
  path = tmp_path / "nan.wav"
  x = _sine(440, 3.0, SR)
  x[100], x[200] = np.nan, np.inf
  sf.write(path, x, SR, subtype="FLOAT")
  assert _reason(path) == "non-finite samples (2 NaN/Inf values)"
