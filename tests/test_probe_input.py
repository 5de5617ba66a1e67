"""Probe input: random training crops, and chunked eval rows that cover every track once."""

import numpy as np
import pytest
import soundfile as sf

from data_pipelines import probe_input
from tests import test_builders_util as util

T = 1000  # view_length in these tests.
MAX_CHUNKS = 3
# Test-split track lengths (samples at 22050 Hz) and labels. Chunks: 1 (padded), 1, 2, 3, 3, 1, 3.
TEST_TRACKS = [(500, "a"), (1000, "b"), (2999, "c"), (3000, "a"), (5500, "b"), (1500, "c"),
               (4000, "a")]
TRAIN_TRACKS = [(2500, "a"), (3000, "b"), (4200, "c"), (2100, "a"), (2600, "b"), (3300, "c")]
NAMES = ["a", "b", "c"]


def _value(k, c):
  """The constant int16 value of chunk c of track k: the audio says where it came from."""
  return k * 1000 + c * 10 + 1


def _write_track(path, k, length):
  pcm = np.array([_value(k, n // T) for n in range(length)], np.int16)
  path.parent.mkdir(parents=True, exist_ok=True)
  sf.write(path, pcm, 22050, subtype="PCM_16")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("probe")
  manual = root / "manual"
  lines = ["path,label,split"]
  for split, tracks, offset in (("test", TEST_TRACKS, 0), ("train", TRAIN_TRACKS, 10)):
    for i, (length, label) in enumerate(tracks):
      rel = f"{split}/{i}.wav"
      _write_track(manual / rel, offset + i, length)
      lines.append(f"{rel},{label},{split}")
  (manual / "labels.csv").write_text("\n".join(lines) + "\n")
  util.build("audio_folder/labeled", manual, root / "data", min_samples=400)
  return str(root / "data")


def _expected_chunks(length):
  return min(max(length // T, 1), MAX_CHUNKS)


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_eval_covers_every_track_exactly_once(data_dir, process_count):
  plans = [probe_input.make_probe_eval_dataset(
      "audio_folder/labeled", "test", data_dir, "label", batch_size=4, view_length=T,
      max_chunks=MAX_CHUNKS, process_index=h, process_count=process_count)
           for h in range(process_count)]
  num_tracks = len(TEST_TRACKS)
  assert {p.num_tracks for p in plans} == {num_tracks}
  assert len({p.num_batches for p in plans}) == 1  # Same number of batches on every host.
  owner = {}  # track_index -> source track k
  rows = {}  # (k, chunk) -> count
  embedding_sum = np.zeros(num_tracks)  # A stand-in "prediction": mean audio per track.
  row_count = np.zeros(num_tracks)
  ranges = []
  for plan in plans:
    assert plan.dataset.options().autotune.enabled is False  # See datasets.without_autotune.
    batches = list(plan.dataset.as_numpy_iterator())
    assert len(batches) == plan.num_batches
    ranges.append(plan.track_range)
    for b in batches:
      assert b["audio"].shape == (4, T) and b["labels"].shape == (4, 3)
      assert not b["audio"][~b["mask"]].any() and (b["track_index"][~b["mask"]] == -1).all()
      for audio, label, index in zip(b["audio"][b["mask"]], b["labels"][b["mask"]],
                                     b["track_index"][b["mask"]]):
        assert plan.track_range[0] <= index < plan.track_range[1]
        value = int(round(audio[0] * 32768))
        k, c = value // 1000, (value % 1000) // 10
        assert owner.setdefault(index, k) == k  # One source track per index.
        length, name = TEST_TRACKS[k]
        expected = np.full(T, _value(k, c) / 32768, np.float32)
        if length < T:
          expected[length:] = 0.0  # The only, partial chunk is zero-padded.
        np.testing.assert_array_equal(audio, expected)
        np.testing.assert_array_equal(label, np.eye(3)[NAMES.index(name)])
        rows[(k, c)] = rows.get((k, c), 0) + 1
        embedding_sum[index] += audio.mean()
        row_count[index] += 1
  assert sorted(owner) == list(range(num_tracks))
  assert sorted(owner.values()) == list(range(num_tracks))
  expected_rows = {(k, c) for k, (n, _) in enumerate(TEST_TRACKS)
                   for c in range(_expected_chunks(n))}
  assert rows == {key: 1 for key in expected_rows}
  chunks = plans[0].chunks_per_track
  np.testing.assert_array_equal(row_count, chunks)
  np.testing.assert_array_equal(np.sort(chunks),
                                np.sort([_expected_chunks(n) for n, _ in TEST_TRACKS]))
  predictions = embedding_sum / row_count
  assert predictions.shape == (num_tracks,) and np.isfinite(predictions).all()
  assert ranges[0][0] == 0 and ranges[-1][1] == num_tracks
  assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_host_ranges_balance_chunk_rows():
  chunks = np.array([64, 1, 1, 1, 1, 64, 2, 2, 2, 2])
  ranges = probe_input.host_ranges(chunks, 2)
  assert ranges == [(0, 5), (5, 10)]
  one = probe_input.host_ranges(np.array([3]), 4)  # One track, four hosts.
  assert one[0][0] == 0 and one[-1][1] == 1 and all(a[1] == b[0] for a, b in zip(one, one[1:]))
  assert sorted(b - a for a, b in one) == [0, 0, 0, 1]


def test_more_hosts_than_tracks_still_same_batches(data_dir):
  plans = [probe_input.make_probe_eval_dataset(
      "audio_folder/labeled", "test", data_dir, "label", batch_size=64, view_length=T,
      max_chunks=MAX_CHUNKS, process_index=h, process_count=9) for h in range(9)]
  counts = [len(list(p.dataset.as_numpy_iterator())) for p in plans]
  assert counts == [1] * 9
  masked_in = sum(int(b["mask"].sum()) for p in plans for b in p.dataset.as_numpy_iterator())
  assert masked_in == sum(_expected_chunks(n) for n, _ in TEST_TRACKS)


def _source(audio_row):
  values = np.round(audio_row * 32768).astype(int)
  return values // 1000 - 10, (values % 1000) // 10


def test_train_crops(data_dir):
  def first_batches(seed, host=0, count=1, n=6):
    ds = probe_input.make_probe_train_dataset(
        "audio_folder/labeled", "train", data_dir, "label", batch_size=4, view_length=T,
        seed=seed, process_index=host, process_count=count, shuffle_buffer=8)
    assert ds.options().autotune.enabled is False  # See datasets.without_autotune.
    return [b for _, b in zip(range(n), ds.as_numpy_iterator())]

  a, b, c = first_batches(0), first_batches(0), first_batches(1)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["audio"], y["audio"])  # Seeded: reproducible.
  assert any(not np.array_equal(x["audio"], y["audio"]) for x, y in zip(a, c))
  starts = {}
  for batch in a:
    assert batch["audio"].shape == (4, T) and batch["audio"].dtype == np.float32
    for audio, label in zip(batch["audio"], batch["labels"]):
      tracks, chunk = _source(audio)
      k = int(tracks[0])
      assert (tracks == k).all()  # A crop never leaves its clip (and is never padded).
      np.testing.assert_array_equal(label, np.eye(3)[NAMES.index(TRAIN_TRACKS[k][1])])
      boundary = np.flatnonzero(np.diff(chunk))
      # Crop start: the first chunk's start plus how far before its end the crop began.
      offset = T - boundary[0] - 1 if len(boundary) else 0
      starts.setdefault(k, set()).add(int(chunk[0]) * T + offset)
  assert sum(len(s) for s in starts.values()) > len(starts)  # Different draws, different crops.
  seen = [{int(_source(r)[0][0]) for b in first_batches(0, h, 2, 6) for r in b["audio"]}
          for h in range(2)]
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(len(TRAIN_TRACKS)))


def test_synthetic_dataset_without_stored_lengths(tmp_path):
  plan = probe_input.make_probe_eval_dataset(
      "synthetic_music/tiny", "test", str(tmp_path), "key", batch_size=8, view_length=59535,
      max_chunks=64)
  indices = np.concatenate([b["track_index"][b["mask"]] for b in plan.dataset.as_numpy_iterator()])
  assert sorted(set(indices.tolist())) == list(range(plan.num_tracks))
  np.testing.assert_array_equal(np.bincount(indices, minlength=plan.num_tracks),
                                plan.chunks_per_track)
