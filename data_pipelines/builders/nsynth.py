"""NSynth notes with the official train/valid/test splits (spec §4.4).

TFDS name 'nsynth_notes' (TFDS's catalog already owns 'nsynth'). Label keys:
  'pitch':             ClassLabel over the 112 MIDI pitches 9..120, named like "A-1", "C#4";
  'instrument_family': ClassLabel over NSynth's 11 families, in NSynth's id order.
Notes are 4 s at 16 kHz (88200 samples after resampling to 22050 Hz).
Any subset of the three split folders may be present; missing ones are simply not built.
"""

from __future__ import annotations

import json
import pathlib

import tensorflow_datasets as tfds

from data_pipelines.builders import base

FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
            "string", "synth_lead", "vocal")
MIN_PITCH, MAX_PITCH = 9, 120
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SPLIT_DIRS = {"train": "nsynth-train", "validation": "nsynth-valid", "test": "nsynth-test"}


def midi_name(pitch: int) -> str:
  """MIDI number -> scientific pitch name (60 -> 'C4', 9 -> 'A-1')."""
  return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


PITCH_NAMES = tuple(midi_name(p) for p in range(MIN_PITCH, MAX_PITCH + 1))


class NsynthNotes(base.ManualAudioBuilder):
  """NSynth single notes: pitch and instrument-family classification."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
NSynth (Engel et al. 2017), the JSON/WAV archives extracted side by side:
  manual_dir/nsynth-train/examples.json   manual_dir/nsynth-train/audio/<note_str>.wav
  manual_dir/nsynth-valid/examples.json   manual_dir/nsynth-valid/audio/<note_str>.wav
  manual_dir/nsynth-test/examples.json    manual_dir/nsynth-test/audio/<note_str>.wav
(at least one of the three; a missing one is not built)."""

  def _label_features(self):
    return {"pitch": tfds.features.ClassLabel(names=list(PITCH_NAMES)),
            "instrument_family": tfds.features.ClassLabel(names=list(FAMILIES))}

  def _collect(self, manual_dir: pathlib.Path) -> base.Collection:
    splits = {}
    for split, folder in SPLIT_DIRS.items():
      json_path = manual_dir / folder / "examples.json"
      if json_path.is_file():
        splits[split] = read_examples(json_path, folder)
    if not splits:
      raise base.ManualDirError(
          f"{manual_dir}: no nsynth-*/examples.json found. Expected layout:\n"
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return base.Collection(splits)


def read_examples(json_path: pathlib.Path, folder: str) -> list[base.AudioItem]:
  """Items of one split, sorted by note name; raises AnnotationError on bad entries."""
  try:
    with open(json_path, encoding="utf-8") as f:
      notes = json.load(f)
  except json.JSONDecodeError as e:
    raise base.AnnotationError(json_path, e.lineno, f"invalid JSON: {e.msg}") from None
  if not isinstance(notes, dict):
    raise base.AnnotationError(json_path, 1, "expected an object {note_str: {...}}")
  audio_dir = json_path.parent / "audio"
  items = []
  for note_str in sorted(notes):
    entry = notes[note_str]
    try:
      pitch = int(entry["pitch"])
      family = int(entry["instrument_family"])
      family_str = entry.get("instrument_family_str")
    except (KeyError, TypeError, ValueError) as e:
      raise base.AnnotationError(json_path, None,
                                 f"{note_str}: missing or bad field ({e!r})") from None
    if not MIN_PITCH <= pitch <= MAX_PITCH:
      raise base.AnnotationError(json_path, None,
                                 f"{note_str}: pitch {pitch} outside {MIN_PITCH}..{MAX_PITCH}")
    if not 0 <= family < len(FAMILIES) or (family_str and family_str != FAMILIES[family]):
      raise base.AnnotationError(
          json_path, None, f"{note_str}: instrument_family {family} / {family_str!r} does not "
          f"match NSynth's families {FAMILIES}")
    rel = f"{folder}/audio/{note_str}.wav"
    items.append(base.AudioItem(rel, audio_dir / f"{note_str}.wav",
                                {"pitch": pitch - MIN_PITCH, "instrument_family": family}))
  return items
