"""Probe metrics against hand-computed values."""

import math

import mir_eval
import numpy as np
import pytest

from ssc_jax.evaluation import key_score
from ssc_jax.evaluation import metrics

# 4 tracks, 3 tags. Tag 0: positives score 0.9 and 0.3, negatives 0.8 and 0.1.
# Tag 1: perfectly ranked. Tag 2: no positive track at all.
SCORES = np.array([[0.9, 0.2, 0.5], [0.8, 0.6, 0.1], [0.3, 0.7, 0.4], [0.1, 0.1, 0.3]])
TARGETS = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], np.float32)


def test_macro_auc_hand_computed_with_an_absent_class():
  out = metrics.macro_auc(SCORES, TARGETS, ["a", "b", "c"])
  # Tag 0 ROC: pairs (pos > neg) = 0.9>0.8, 0.9>0.1, 0.3>0.1 = 3 of 4 -> 0.75; tag 1: 1.0.
  # Tag 0 AP: ranks pos, neg, pos, neg -> precision 1/1 and 2/3 at the two positives -> 5/6.
  assert out["per_class_roc_auc"][:2] == pytest.approx([0.75, 1.0])
  assert out["per_class_pr_auc"][:2] == pytest.approx([5 / 6, 1.0])
  assert math.isnan(out["per_class_roc_auc"][2]) and math.isnan(out["per_class_pr_auc"][2])
  assert out["roc_auc"] == pytest.approx(0.875)
  assert out["pr_auc"] == pytest.approx((5 / 6 + 1) / 2)
  assert out["num_classes_scored"] == 2 and out["num_classes_unscored"] == 1
  assert out["unscored_classes"] == ["c"]


def test_always_positive_class_is_also_unscored_and_ties_count_half():
  scores = np.array([[0.5, 0.2], [0.5, 0.4], [0.1, 0.9]])
  targets = np.array([[1, 1], [0, 1], [0, 1]])
  out = metrics.macro_auc(scores, targets)
  # Tag 0: positive 0.5 vs negatives 0.5 (tie, 1/2) and 0.1 (win) -> 0.75.
  assert out["roc_auc"] == pytest.approx(0.75)
  assert out["unscored_classes"] == ["1"]


def test_no_scorable_class_gives_nan_not_an_exception():
  out = metrics.macro_auc(np.zeros((3, 2)), np.zeros((3, 2)))
  assert math.isnan(out["roc_auc"]) and out["num_classes_scored"] == 0


def test_bad_shapes_and_nan_scores_are_refused():
  with pytest.raises(ValueError, match="must both be"):
    metrics.macro_auc(np.zeros((3, 2)), np.zeros((3, 3)))
  with pytest.raises(ValueError, match="NaN"):
    metrics.accuracy(np.full((2, 2), np.nan), np.eye(2))


def test_accuracy_and_r2_hand_computed():
  scores = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [5.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  assert metrics.accuracy(scores, np.eye(3)[[0, 1, 1, 2]]) == 0.75
  targets = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
  preds = np.array([[1.0, 2.0], [2.0, 4.0], [4.0, 6.0]])
  # Output 0: SS_res 1, SS_tot 2 -> 0.5. Output 1: exact -> 1.
  out = metrics.r2(preds, targets, ["arousal", "valence"])
  assert out == pytest.approx({"r2": 0.75, "r2_arousal": 0.5, "r2_valence": 1.0})


# Hand-computed: (reference, estimate, MIREX score, our both-fifths score).
@pytest.mark.parametrize("ref,est,score,both", [
    ("C major", "C major", 1.0, 1.0),  # same
    ("C major", "G major", 0.5, 0.5),  # fifth up
    ("C major", "F major", 0.0, 0.5),  # fifth down: only ours counts it
    ("A minor", "E minor", 0.5, 0.5),
    ("A minor", "D minor", 0.0, 0.5),
    ("C major", "A minor", 0.3, 0.3),  # relative minor
    ("A minor", "C major", 0.3, 0.3),  # relative major
    ("A minor", "F# major", 0.0, 0.0),  # 9 up from a minor key is not its relative
    ("C major", "C minor", 0.2, 0.2),  # parallel
    ("C minor", "G minor", 0.5, 0.5),
    ("C major", "G minor", 0.0, 0.0),  # fifth up, other mode
    ("C major", "E minor", 0.0, 0.0),  # other
    ("C major", "D major", 0.0, 0.0),
    ("C# minor", "Db minor", 1.0, 1.0),  # enharmonic spellings
    ("Db major", "Ab major", 0.5, 0.5),
    ("Bb minor", "Db major", 0.3, 0.3),
    ("B major", "Gb major", 0.5, 0.5),  # fifth up across the octave (11 -> 6)
    ("Cb major", "B major", 1.0, 1.0),  # a spelling mir_eval does not read, respelled
    ("E# minor", "Bb minor", 0.0, 0.5),
])
def test_weighted_key_score(ref, est, score, both):
  assert key_score.weighted_score(ref, est) == score
  assert key_score.weighted_score(ref, est, allow_descending_fifths=True) == both
  if all(k.split()[0].lower() in mir_eval.key.KEY_TO_SEMITONE for k in (ref, est)):
    assert mir_eval.key.weighted_score(ref, est) == score  # The reference scorer agrees.


def test_key_parsing_errors_name_the_string():
  for bad in ("H major", "C dorian", "major", "Cx minor"):
    with pytest.raises(ValueError, match="cannot parse key"):
      key_score.parse_key(bad)
  assert key_score.are_key_names(["C major", "C# minor", "Bb major"])
  assert not key_score.are_key_names(["rock", "C major"])


def test_task_metrics_for_keys_adds_the_weighted_scores():
  names = ["C major", "G major", "A minor", "F major"]
  targets = np.eye(4)[[0, 0, 0, 0]]
  # Estimates: C major (1), G major (0.5), A minor (0.3), F major (0 / 0.5 both-fifths).
  scores = np.eye(4)[[0, 1, 2, 3]]
  out = metrics.task_metrics("multiclass", scores, targets, names, key_names=True)
  assert out["accuracy"] == 0.25
  assert out["weighted_key_score"] == pytest.approx((1 + 0.5 + 0.3 + 0) / 4)
  assert out["weighted_key_score_both_fifths"] == pytest.approx((1 + 0.5 + 0.3 + 0.5) / 4)


def test_task_metrics_rejects_unknown_kind_and_scalars_keep_ints():
  with pytest.raises(ValueError, match="unknown task kind"):
    metrics.task_metrics("ranking", SCORES, TARGETS, ["a", "b", "c"])
  scalars = metrics.scalar_metrics(metrics.task_metrics("multilabel", SCORES, TARGETS, "abc"))
  assert scalars["num_classes_scored"] == 2 and isinstance(scalars["num_classes_scored"], int)
  assert "per_class_roc_auc" not in scalars
