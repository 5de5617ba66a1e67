"""The MIREX weighted key score (`mir_eval.key.weighted_score`) and our both-fifths variant.

mir_eval (the scorer the SemiSupCon paper used) scores an estimated key against its reference:
  1.0  same tonic and mode;
  0.5  same mode, estimated tonic a perfect fifth (7 semitones) ABOVE the reference tonic;
  0.3  relative keys: reference major and estimate its relative minor (tonic 9 semitones up),
       or reference minor and estimate its relative major (tonic 3 semitones up);
  0.2  parallel keys: same tonic, other mode;
  0.0  otherwise.
It counts only the ascending fifth (mir_eval issue #337 discusses the asymmetry), so
`mean_weighted_score` defaults to it. Ours, `allow_descending_fifths=True` (reported as
`weighted_key_score_both_fifths`), also gives 0.5 to a fifth below (a fourth above) in the same
mode; every other pair scores as in mir_eval.

Key names: "<tonic> <mode>", tonic a letter A-G followed by any number of '#' or 'b'
(e.g. "C# minor", "Db major", "Cb minor"), mode "major" or "minor" (case-insensitive). They
are respelled in mir_eval's vocabulary (flats, lower-case mode) before scoring.
"""

from __future__ import annotations

from collections.abc import Sequence

import mir_eval

from data_pipelines import conventions

_MIR_EVAL_TONICS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
parse_key = conventions.parse_key  # "Db minor" -> (1, "minor").


def weighted_score(reference: str, estimate: str, *,
                   allow_descending_fifths: bool = False) -> float:
  """The MIREX score of one estimated key against its reference (see the module docstring)."""
  ref_tonic, ref_mode = parse_key(reference)
  est_tonic, est_mode = parse_key(estimate)
  if allow_descending_fifths and ref_mode == est_mode and (est_tonic - ref_tonic) % 12 == 5:
    return 0.5
  return float(mir_eval.key.weighted_score(f"{_MIR_EVAL_TONICS[ref_tonic]} {ref_mode}",
                                           f"{_MIR_EVAL_TONICS[est_tonic]} {est_mode}"))


def mean_weighted_score(references: Sequence[str], estimates: Sequence[str], *,
                        allow_descending_fifths: bool = False) -> float:
  """Mean weighted score over tracks. references, estimates: n key names each."""
  if len(references) != len(estimates) or not references:
    raise ValueError(f"need as many estimates as references (>0), got {len(estimates)} and "
                     f"{len(references)}.")
  return sum(weighted_score(r, e, allow_descending_fifths=allow_descending_fifths)
             for r, e in zip(references, estimates)) / len(references)


def are_key_names(names: Sequence[str]) -> bool:
  """Whether every name parses as a key (used to turn the key score on automatically)."""
  try:
    for n in names:
      parse_key(n)
  except ValueError:
    return False
  return bool(names)
