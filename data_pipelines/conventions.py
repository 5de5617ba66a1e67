"""Facts every layer shares, defined once: the audio rate, the view length, the label kinds.

This module imports nothing, so `data_pipelines` (no JAX), the library, the inference layer,
evaluation and bench scripts can all read it; it is their one home. Configs (plain data) keep
their own literal values: `configs/common.py` sets `data.sample_rate` and `data.view_length`
to these numbers, and a config may choose others.

* `SAMPLE_RATE`: Hz of every prepared dataset's PCM and of the SemiSupCon encoder's input
  (spec §4.1); also the fallback for an export written before model cards recorded it.
* `VIEW_LENGTH`: T, samples per view in pretraining (2.7 s at 22050 Hz, spec §4.2): the
  default chunk length for embeddings and the default shortest file a dataset keeps.
* Label kinds: how a dataset's label feature is read. `MULTICLASS` one class per track
  (ClassLabel); `MULTILABEL` a multi-hot vector; `REGRESSION` real-valued targets.
* Names of pitch classes and keys (class names of key and pitch-class labels), read by
  `parse_pitch_class` and `parse_key` for the key score and the key/pitch-class similarities.
"""

SAMPLE_RATE = 22050
VIEW_LENGTH = 59535  # int(2.7 s * 22050 Hz).

MULTICLASS, MULTILABEL, REGRESSION = "multiclass", "multilabel", "regression"
LABEL_KINDS = (MULTICLASS, MULTILABEL, REGRESSION)

_NATURAL_PITCH_CLASSES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
KEY_MODES = ("major", "minor")


def parse_pitch_class(name: str) -> int:
  """"C" -> 0, "C#" -> 1, "Db" -> 1, ..., "B" -> 11: a letter A-G and any number of '#'/'b'.

  Raises:
    ValueError: naming `name`, if it is not a pitch class.
  """
  name = str(name).strip()
  if not name or name[0].lower() not in _NATURAL_PITCH_CLASSES or any(
      c not in "#b" for c in name[1:]):
    raise ValueError(f"{name!r} is not a pitch class (a letter A-G and optional '#' or 'b', "
                     f"e.g. 'C#', 'Eb').")
  return (_NATURAL_PITCH_CLASSES[name[0].lower()] + name.count("#") - name[1:].count("b")) % 12


def parse_key(name: str) -> tuple[int, str]:
  """"Db minor" -> (1, "minor"): tonic pitch class (C = 0) and mode ("major" or "minor",
  case-insensitive in `name`).

  Raises:
    ValueError: naming `name`, if it is not "<tonic> <major|minor>".
  """
  parts = str(name).strip().split()
  try:
    if len(parts) != 2 or parts[1].lower() not in KEY_MODES:
      raise ValueError
    return parse_pitch_class(parts[0]), parts[1].lower()
  except ValueError:
    raise ValueError(f"cannot parse key {name!r}: {name!r} is not a key name ('<tonic> major' "
                     "or '<tonic> minor', e.g. 'C# minor' or 'Db major').") from None
