"""Tiny fake copies of each real dataset's on-disk layout (the user's manual download).

Shared by the builder tests (tests/test_builders_*.py), which check what each builder makes
of these layouts, and by tests/test_eval_tasks_on_fake_layouts.py, which prepares them and
runs every probe task on the result. Audio files are short sines (`test_builders_util`), each
of a layout at its own pitch, so prepare them with `min_samples=test_builders_util.MIN_SAMPLES`.
The `write_*` functions write a layout under a root folder. Holds no tests itself.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import soundfile as sf
import yaml

from data_pipelines.builders import base
from data_pipelines.builders import giantsteps
from data_pipelines.builders import gtzan
from tests import test_builders_util as util


def tone_writer() -> Callable[..., pathlib.Path]:
  """`util.write_audio` that gives each file it writes a pitch of its own.

  The k-th call writes 110 Hz · 2^((7k mod 60) / 12): 60 different semitones over 5 octaves,
  so that the clips of a layout embed differently.
  """
  count = itertools.count()

  def write(path: os.PathLike, **kwargs: Any) -> pathlib.Path:
    return util.write_audio(path, freq=110.0 * 2 ** ((7 * next(count) % 60) / 12), **kwargs)

  return write


# ----------------------------------------------------------------------------------- MTAT ---
MTAT_NUM_TAGS = 188
MTAT_TAGS = [f"tag{j:03d}" for j in range(MTAT_NUM_TAGS)]
MTAT_TOP = sorted(np.random.default_rng(0).choice(MTAT_NUM_TAGS, 50, replace=False).tolist())
MTAT_OTHER = [j for j in range(MTAT_NUM_TAGS) if j not in MTAT_TOP]
# (mp3_path, tag columns). Top-50 columns appear 8x each; other columns at most once.
MTAT_FOLDERS = ["0", "1", "5", "9", "a", "b", "c", "c", "d", "e", "f", "f"]


def mtat_clips() -> list[tuple[str, list[int]]]:
  """(mp3_path, tag columns) of every row of the fake annotations_final.csv."""
  top, other = MTAT_TOP, MTAT_OTHER
  clips = []
  for k, folder in enumerate(MTAT_FOLDERS):
    tags = [j for i, j in enumerate(top) if (i + k) % 3 != 0] + [other[k]]
    clips.append((f"{folder}/artist-album-{k:02d}-track-0-29.mp3", tags))
  clips.append(("b/untagged-train.mp3", [other[20]]))  # No top-50 tag -> 'unlabeled'.
  clips.append(("3/no-tag-at-all.mp3", []))  # No tag at all.
  clips.append(("e/untagged-test.mp3", [other[21]]))  # No top-50 tag, test folder -> dropped.
  clips.append(("2/corrupt.mp3", top[:3]))
  clips.append(("4/missing.mp3", top[:3]))
  return clips


def write_mtat(root: pathlib.Path) -> pathlib.Path:
  """Writes annotations_final.csv and the MP3 folders (one file corrupt, one missing)."""
  root.mkdir(parents=True, exist_ok=True)
  tone = tone_writer()
  with open(root / "annotations_final.csv", "w", newline="") as f:
    writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL)
    writer.writerow(["clip_id", *MTAT_TAGS, "mp3_path"])
    for clip_id, (path, tags) in enumerate(mtat_clips()):
      row = ["1" if j in tags else "0" for j in range(MTAT_NUM_TAGS)]
      writer.writerow([str(clip_id + 2), *row, path])
      if "corrupt" in path:
        util.write_corrupt(root / path)
      elif "missing" not in path:
        tone(root / path, seconds=0.25, sr=16000)
  return root


# ---------------------------------------------------------------------------- MTG-Jamendo ---
MTG_SUBSET = "autotagging_instrument"
MTG_NAMES = [f"instrument---i{i:02d}" for i in range(40)]
MTG_SPLITS = {"train": range(0, 8), "validation": range(8, 11), "test": range(11, 14)}
# Subset -> tag names in the fake TSVs (as many as the real subset has).
MTG_SUBSET_NAMES = {
    "autotagging_top50tags": [f"genre---t{i:02d}" for i in range(50)],
    "autotagging_genre": [f"genre---g{i:02d}" for i in range(87)],
    "autotagging_moodtheme": [f"mood/theme---m{i:02d}" for i in range(56)],
    MTG_SUBSET: MTG_NAMES,
}
MTG_CORRUPT_TRACK = 3  # Undecodable.
MTG_LOW_QUALITY_TRACK = 12  # Only its .low.mp3 copy exists.


def mtg_tracks(names: list[str] = MTG_NAMES) -> dict[int, list[str]]:
  """track number -> tags; every tag is used by exactly one of the 14 tracks."""
  return {t: [names[i] for i in range(len(names)) if i % 14 == t] for t in range(14)}


def write_mtg_tsvs(split_dir: pathlib.Path, tracks: dict[int, list[str]],
                   subset: str = MTG_SUBSET) -> None:
  """`<subset>-{train,validation,test}.tsv` with MTG_SPLITS' tracks."""
  split_dir.mkdir(parents=True, exist_ok=True)
  for split, numbers in MTG_SPLITS.items():
    lines = ["TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"]
    for t in numbers:
      lines.append("\t".join([f"track_{1000 + t:07d}", f"artist_{t:06d}", f"album_{t:06d}",
                              f"{t:02d}/{1000 + t}.mp3", "200.5", *tracks[t]]))
    (split_dir / f"{subset}-{split}.tsv").write_text("\n".join(lines) + "\n")


def write_mtg_jamendo(root: pathlib.Path, subsets: tuple[str, ...] = (MTG_SUBSET,)
                      ) -> pathlib.Path:
  """Writes the split-0 TSVs of `subsets` and the 14 tracks' audio.

  Track MTG_CORRUPT_TRACK is undecodable; MTG_LOW_QUALITY_TRACK exists only as .low.mp3.
  """
  for subset in subsets:
    write_mtg_tsvs(root / "data" / "splits" / "split-0", mtg_tracks(MTG_SUBSET_NAMES[subset]),
                   subset=subset)
  tone = tone_writer()
  for t in range(14):
    path = root / "audio" / f"{t:02d}" / f"{1000 + t}.mp3"
    if t == MTG_CORRUPT_TRACK:
      util.write_corrupt(path)
    elif t == MTG_LOW_QUALITY_TRACK:
      tone(path.with_name(f"{1000 + t}.low.mp3"), sr=44100)  # Low-quality copy.
    else:
      tone(path, sr=44100)
  return root


# ---------------------------------------------------------------------------------- GTZAN ---
def gtzan_shipped(split: str) -> list[str]:
  """The shipped fault-filtered list of a split ("genre/genre.000NN.wav" entries)."""
  return base.read_lines(gtzan.SHIPPED_LISTS / gtzan.SPLIT_FILES[split])


def write_gtzan(manual: pathlib.Path, extra_test: int = 0) -> dict[str, Any]:
  """Writes genres_original/<genre>/ files named as in the shipped split lists.

  2 train files (+ 1 corrupt), 1 validation, 1 test (rock.00090), 1 file no list names, and
  `extra_test` more test files (`gtzan_extra_test`).

  Returns:
    {'pcm': the exact int16 samples of train file blues.00029, 'unlisted': the unlisted
     file's stem, 'extra_test': the extra test entries written}.
  """
  root = manual / "genres_original"
  tone = tone_writer()
  pcm = np.random.default_rng(0).integers(-9000, 9000, 3000, dtype=np.int16)
  root.joinpath("blues").mkdir(parents=True, exist_ok=True)
  sf.write(root / "blues" / "blues.00029.wav", pcm, 22050, subtype="PCM_16")  # train
  tone(root / "country" / "country.00019.wav")  # train
  tone(root / "blues" / "blues.00000.wav", sr=44100)  # validation
  tone(root / "rock" / "rock.00090.au")  # test, .au like the original archive
  util.write_corrupt(root / "jazz" / "jazz.00054.wav")  # train, broken (as in a known copy)
  listed = {e.split("/")[1][:-4] for s in gtzan.SPLIT_FILES for e in gtzan_shipped(s)}
  unlisted = next(f"pop.{i:05d}" for i in range(100) if f"pop.{i:05d}" not in listed)
  tone(root / "pop" / f"{unlisted}.wav")  # Excluded by the filter: never used.
  extra = gtzan_extra_test(extra_test)
  for entry in extra:
    tone(root / entry)
  return {"pcm": pcm, "unlisted": unlisted, "extra_test": extra}


def gtzan_extra_test(n: int) -> list[str]:
  """The first `n` shipped test entries of genres other than rock, one per genre."""
  extra, genres = [], {"rock"}
  for entry in gtzan_shipped("test"):
    genre = entry.split("/")[0]
    if len(extra) < n and genre not in genres:
      genres.add(genre)
      extra.append(entry)
  return extra


# ----------------------------------------------------------------------------- GiantSteps ---
def giantsteps_ids(n_train: int, n_val: int) -> tuple[list[str], list[str]]:
  """Track ids whose hash puts them in train / validation under the documented rule."""
  train, val = [], []
  for i in range(1000, 5000):
    frac = base.stable_fraction(str(i), "giantsteps-val")
    (val if frac < giantsteps.VAL_FRACTION else train).append(str(i))
    if len(train) >= n_train and len(val) >= n_val:
      return train[:n_train], val[:n_val]
  raise AssertionError("not enough ids")


# Test tracks of the GiantSteps-key part: name -> key file text; 10400's audio is corrupt.
GIANTSTEPS_TEST_KEYS = {"10089": "Eb minor", "10200": "g# major", "10300": "C major\n",
                        "10400": "B minor"}


def write_giantsteps(root: pathlib.Path) -> tuple[dict[str, str], list[str], list[str]]:
  """Writes the MTG-key and GiantSteps-key parts.

  MTG-key: annotations.txt (6 kept rows, 4 excluded for confidence or ambiguity) and audio;
  GiantSteps-key: audio and .key files of GIANTSTEPS_TEST_KEYS (10400's audio corrupt).

  Returns:
    (track id -> normalised key of the kept MTG-key tracks, train ids, validation ids).
  """
  mtg, keyds = giantsteps.MTG_DIR, giantsteps.KEY_DIR
  tone = tone_writer()
  train_ids, val_ids = giantsteps_ids(4, 2)
  kept = dict(zip(train_ids + val_ids,
                  ["D# minor", "A major", "F# minor", "C# major", "G minor", "A# minor"]))
  expected = dict(zip(train_ids + val_ids,
                      ["Eb minor", "A major", "Gb minor", "Db major", "G minor", "Bb minor"]))
  excluded = {"90001": ("E minor", "1"), "90002": ("-", "0"), "90003": ("C minor / F# minor", "2"),
              "90004": ("", "2")}
  lines = ["ID\tMANUAL KEY\tC"]
  lines += [f"{i}\t{k}\t2" for i, k in kept.items()]
  lines += [f"{i}\t{k}\t{c}" for i, (k, c) in excluded.items()]
  ann = root / mtg / "annotations" / "annotations.txt"
  ann.parent.mkdir(parents=True)
  ann.write_text("\n".join(lines) + "\n")
  for track in [*kept, *excluded]:
    tone(root / mtg / "audio" / f"{track}.LOFI.mp3", sr=44100)
  for name, key in GIANTSTEPS_TEST_KEYS.items():
    tone(root / keyds / "audio" / f"{name}.LOFI.mp3", sr=44100)
    key_file = root / keyds / "annotations" / "key" / f"{name}.LOFI.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
  util.write_corrupt(root / keyds / "audio" / "10400.LOFI.mp3")
  return expected, train_ids, val_ids


# --------------------------------------------------------------------------------- NSynth ---
NSYNTH_FAMILY = ["bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
                 "string", "synth_lead", "vocal"]
# Split folder -> (note_str, MIDI pitch, instrument family); only valid and test.
NSYNTH_NOTES = {
    "nsynth-valid": [("keyboard_acoustic_004-060-100", 60, 4), ("bass_synthetic_033-009-050", 9, 0),
                     ("vocal_synthetic_003-120-127", 120, 10)],
    "nsynth-test": [("guitar_electronic_022-061-075", 61, 3), ("reed_acoustic_011-045-127", 45, 7),
                    ("brass_acoustic_046-070-127", 70, 1)],
}
# The same plus a train folder (the probe tasks need a train split).
NSYNTH_NOTES_WITH_TRAIN = {
    "nsynth-train": [("organ_electronic_001-048-100", 48, 6), ("string_acoustic_012-061-050", 61, 8),
                     ("flute_acoustic_002-070-075", 70, 2), ("mallet_acoustic_047-045-127", 45, 5),
                     ("guitar_acoustic_010-060-100", 60, 3)],
    **NSYNTH_NOTES,
}


def write_nsynth(root: pathlib.Path, notes: dict[str, list[tuple[str, int, int]]],
                 corrupt: frozenset[str] | set[str] = frozenset()) -> pathlib.Path:
  """Writes <folder>/examples.json and <folder>/audio/<note_str>.wav (16 kHz) per folder.

  Args:
    root: the manual dir.
    notes: split folder -> (note_str, MIDI pitch, instrument family) entries.
    corrupt: note_strs whose audio is undecodable.
  """
  tone = tone_writer()
  for folder, entries in notes.items():
    meta = {}
    for name, pitch, family in entries:
      meta[name] = {"note_str": name, "pitch": pitch, "velocity": 100, "sample_rate": 16000,
                    "instrument_family": family, "instrument_family_str": NSYNTH_FAMILY[family],
                    "instrument_source": 0, "instrument_source_str": "acoustic",
                    "qualities": [0] * 10, "qualities_str": []}
      path = root / folder / "audio" / f"{name}.wav"
      util.write_corrupt(path) if name in corrupt else tone(path, sr=16000)
    (root / folder / "examples.json").write_text(json.dumps(meta))
  return root


# ------------------------------------------------------------------------------- VocalSet ---
VOCALSET_SINGERS = {"f2": "female2", "f10": "female10", "m3": "male3", "m5": "male5"}
VOCALSET_TECHNIQUES = {"arpeggios": ["belt", "vibrato"], "long_tones": ["straight", "vibrato"]}
VOCALSET_TRAIN_SINGERS = ("female2", "male3")  # train_singers_technique.txt (m5 in neither).
VOCALSET_TEST_SINGERS = ("female10",)  # test_singers_technique.txt


def vocalset_files() -> dict[str, tuple[str, str]]:
  """relative path -> (singer prefix, technique) of every file of the fake layout."""
  files = {}
  for prefix, folder in VOCALSET_SINGERS.items():
    for context, techniques in VOCALSET_TECHNIQUES.items():
      for technique in techniques:
        for vowel in ("a", "e"):
          rel = f"FULL/{folder}/{context}/{technique}/{prefix}_{context}_{technique}_{vowel}.wav"
          files[rel] = (prefix, technique)
  return files


def write_vocalset(root: pathlib.Path) -> dict[str, tuple[str, str]]:
  """Writes the FULL/ audio tree and the technique split's singer lists.

  Files: FULL/<singer>/<context>/<technique>/<prefix>_<context>_<technique>_<vowel>.wav.

  Returns:
    `vocalset_files()`: relative path -> (singer prefix, technique) of every file.
  """
  files, tone = vocalset_files(), tone_writer()
  for rel in files:
    tone(root / rel, sr=44100)
  (root / "train_singers_technique.txt").write_text("\n".join(VOCALSET_TRAIN_SINGERS) + "\n")
  (root / "test_singers_technique.txt").write_text("\n".join(VOCALSET_TEST_SINGERS) + "\n")
  return files


# ------------------------------------------------------------------------------- MedleyDB ---
# Stem instrument per song; 22 kept instruments, the last 2 rarest fall outside the top 20.
MEDLEYDB_COUNTS = {"i00": 10, **{f"i{k:02d}": 2 for k in range(1, 20)}, "i20": 1, "i21": 1}


def medleydb_stems(counts: dict[str, int] = MEDLEYDB_COUNTS) -> dict[str, list[Any]]:
  """song -> stem instruments; one stem has a list (i01 + i02), some use excluded labels."""
  stems = [name for name, n in counts.items() for _ in range(n)]
  stems.remove("i01")
  stems.remove("i02")
  stems.append(["i01", "i02"])  # Exploded: counts once for each.
  stems += ["Main System", "fx/processed sound", "Unlabeled"]
  songs = {}
  for k, instrument in enumerate(stems):
    songs.setdefault(f"Artist{k % 4}_Song{k % 4}", []).append(instrument)
  return songs


def write_medleydb(root: pathlib.Path, counts: dict[str, int] = MEDLEYDB_COUNTS
                   ) -> pathlib.Path:
  """Writes Metadata/<song>_METADATA.yaml and Audio/V1|V2/<song>/<song>_STEMS/ stems.

  The first stem of Artist0_Song0 (an i00 row) is missing.
  """
  tone = tone_writer()
  for s, (song, instruments) in enumerate(sorted(medleydb_stems(counts).items())):
    version = "V1" if s % 2 == 0 else "V2"
    stems = {}
    for k, instrument in enumerate(instruments, start=1):
      filename = f"{song}_STEM_{k:02d}.wav"
      stems[f"S{k:02d}"] = {"component": "", "filename": filename, "instrument": instrument,
                            "raw": {"R01": {"filename": "x.wav", "instrument": instrument}}}
      if not (song.endswith("0") and k == 1):  # One stem file is missing.
        tone(root / "Audio" / version / song / f"{song}_STEMS" / filename, sr=44100)
    meta = {"album": "A", "artist": song.split("_")[0], "mix_filename": f"{song}_MIX.wav",
            "stem_dir": f"{song}_STEMS", "raw_dir": f"{song}_RAW", "stems": stems}
    path = root / "Metadata" / f"{song}_METADATA.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(meta))
  return root


# ------------------------------------------------------------------------------- EmoMusic ---
EMOMUSIC_INFO_COLUMNS = ["song_id", "file_name", "Artist", "Song title",
                         "start of the segment (min.sec)", "end of the segment (min.sec)",
                         "Genre", "Mediaeval 2013 set"]


def emomusic_dev_split(artist: str) -> str:
  """The jukemir rule, written out independently of the builder."""
  kept = "".join(c for c in artist.lower() if c.isascii() and (c.isalpha() or c.isspace()))
  digest = hashlib.sha1(" ".join(kept.split()).encode()).hexdigest()
  return "train" if int(digest, 16) % 10 < 8 else "validation"


def emomusic_songs() -> list[tuple[int, str, str, np.ndarray]]:
  """(song_id, artist, 'development' | 'evaluation', [arousal, valence]) per song."""
  rng = np.random.default_rng(3)
  artists = [f"Artist Number {chr(65 + k)}" for k in range(20)]
  dev = [a for a in artists if emomusic_dev_split(a) == "train"][:5]
  dev += [a for a in artists if emomusic_dev_split(a) == "validation"][:2]
  songs = []
  for k, artist in enumerate(dev + ["Beyoncé & Co.", "BEYONCÉ  &  co"]):
    songs.append((k + 2, artist, "development", rng.uniform(1, 9, 2)))
  for k in range(3):
    songs.append((100 + k, f"Eval Artist {k}", "evaluation", rng.uniform(1, 9, 2)))
  return songs


def write_emomusic(root: pathlib.Path) -> pathlib.Path:
  """Writes annotations/{songs_info,static_annotations}.csv and clips_45seconds/<id>.mp3.

  The static annotations hold the values of `emomusic_songs` rounded to 4 decimals.
  """
  (root / "annotations").mkdir(parents=True, exist_ok=True)
  with open(root / "annotations" / "songs_info.csv", "w", newline="") as f:
    writer = csv.writer(f, quoting=csv.QUOTE_ALL)
    writer.writerow(EMOMUSIC_INFO_COLUMNS)
    for song, artist, group, _ in emomusic_songs():
      writer.writerow([song, f"{song}.mp3", f"{artist}\t", "title\t", "0.15", "1.00", "Rock\t",
                       group])
  with open(root / "annotations" / "static_annotations.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["song_id", "mean_arousal", "std_arousal", "mean_valence", "std_valence"])
    for song, _, _, (arousal, valence) in emomusic_songs():
      writer.writerow([song, f"{arousal:.4f}", "1.1", f"{valence:.4f}", "0.9"])
  tone = tone_writer()
  for song, *_ in emomusic_songs():
    tone(root / "clips_45seconds" / f"{song}.mp3", sr=44100)
  return root
