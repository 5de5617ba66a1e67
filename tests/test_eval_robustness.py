"""Robustness sweep plumbing: regrouping chunk rows into whole-track batches, level lookup."""

import numpy as np
import pytest

from ssc_jax.evaluation import robustness

T = 3


def _rows(track_range, chunks, batch):
  """Chunk-row batches as probe_input yields them: a chunk's audio is 10·track + chunk."""
  rows = [(i, c) for i in range(*track_range) for c in range(chunks[i])]
  rows += [(-1, 0)] * (-len(rows) % batch + batch)  # padding rows, then one padding batch
  for s in range(0, len(rows), batch):
    part = rows[s:s + batch]
    yield {"audio": np.array([[10 * i + c] * T for i, c in part], np.float32),
           "track_index": np.array([i for i, _ in part], np.int32),
           "mask": np.array([i >= 0 for i, _ in part])}


def test_track_batches_hold_every_track_once_with_its_chunks():
  chunks = np.array([2, 1, 3, 3, 1, 2, 2])
  batches = list(robustness.iter_track_batches(_rows((1, 6), chunks, 4), (1, 6), chunks,
                                               tracks_per_batch=2, num_batches=4, max_chunks=3))
  assert len(batches) == 4
  seen = []
  for b in batches:
    assert b["audio"].shape == (2, 3, T) and b["chunk_mask"].shape == (2, 3)
    for audio, mask, index in zip(b["audio"], b["chunk_mask"], b["track_index"]):
      if index < 0:
        assert not mask.any() and not audio.any()
        continue
      seen.append(int(index))
      assert mask.sum() == chunks[index]
      np.testing.assert_array_equal(audio[mask][:, 0], 10 * index + np.arange(chunks[index]))
      assert not audio[~mask].any()
  assert seen == [1, 2, 3, 4, 5]


def test_too_few_batches_for_the_tracks_is_an_error():
  chunks = np.array([1, 1, 1])
  with pytest.raises(RuntimeError, match="batch plan"):
    list(robustness.iter_track_batches(_rows((0, 3), chunks, 8), (0, 3), chunks,
                                       tracks_per_batch=1, num_batches=2, max_chunks=1))


def test_levels_default_to_the_ladder_and_unknown_names_are_listed():
  levels = robustness.build_levels((), 22050)
  assert [lvl.name for lvl in levels] == (
      [f"severity_{s}" for s in range(5)] + [f"tier_{t}" for t in range(5, 11)])
  assert [lvl.index for lvl in levels] == list(range(11))
  with pytest.raises(ValueError, match="only_reverse"):
    robustness.build_levels(("severity_9",), 22050)
