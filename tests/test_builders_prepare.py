"""The prepare CLI: first run, idempotent second run, layout errors, listing."""

import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from data_pipelines import decode
from data_pipelines import prepare
from data_pipelines.builders import base
from tests import test_builders_util as util


def _gtzan_manual(root):
  util.write_audio(root / "genres" / "blues" / "blues.00029.wav")
  util.write_audio(root / "genres" / "blues" / "blues.00030.wav")
  util.write_corrupt(root / "genres" / "blues" / "blues.00031.wav")
  util.write_audio(root / "genres" / "rock" / "rock.00003.wav")
  (root / "train_filtered.txt").write_text(
      "blues/blues.00029.wav\nblues/blues.00030.wav\nblues/blues.00031.wav\n")
  (root / "valid_filtered.txt").write_text("rock/rock.00003.wav\n")
  (root / "test_filtered.txt").write_text("")  # No test split.


def test_prepare_twice_then_reuse(tmp_path, capsys):
  manual, data = tmp_path / "gtzan", tmp_path / "data"
  _gtzan_manual(manual)
  args = ["--dataset=gtzan_filtered", f"--manual_dir={manual}", f"--data_dir={data}",
          f"--min_samples={util.MIN_SAMPLES}", "--num_workers=2"]
  assert prepare.main(args) == 0
  out = capsys.readouterr().out
  assert "train       kept       2, skipped     1  (see skipped-train.tsv)" in out
  assert "validation  kept       1, skipped     0" in out
  report = next(data.glob("gtzan_filtered/1.0.0/skipped-train.tsv")).read_text().splitlines()
  assert report[0] == "path\treason"
  assert report[1].startswith("genres/blues/blues.00031.wav\tundecodable")
  for f in manual.rglob("*.wav"):  # A second run must not need the sources.
    f.unlink()
  assert prepare.main(args) == 0
  out = capsys.readouterr().out
  assert out.startswith("Already prepared; reusing it")
  assert "train       kept       2, skipped     1" in out


def test_wrong_layout_lists_expected_files(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "something.txt").write_text("x")
  code = prepare.main(["--dataset=nsynth_notes", f"--manual_dir={tmp_path / 'empty'}",
                       f"--data_dir={tmp_path / 'data'}"])
  err = capsys.readouterr().err
  assert code == 2
  assert "no nsynth-*/examples.json found" in err and "nsynth-test/audio/<note_str>.wav" in err
  code = prepare.main(["--dataset=mtat/top50", f"--manual_dir={tmp_path / 'nope'}",
                       f"--data_dir={tmp_path / 'data'}"])
  err = capsys.readouterr().err
  assert code == 2 and "is not a directory" in err and "annotations_final.csv" in err
  (tmp_path / "void").mkdir()
  code = prepare.main(["--dataset=fma/medium", f"--manual_dir={tmp_path / 'void'}",
                       f"--data_dir={tmp_path / 'data'}"])
  err = capsys.readouterr().err
  assert code == 2 and "is empty" in err and "fma_<subset>/<NNN>/<NNNNNN>.mp3" in err


def test_unknown_dataset_and_list(capsys):
  assert prepare.main(["--dataset=imagenet"]) == 2
  assert "unknown dataset 'imagenet'" in capsys.readouterr().err
  assert prepare.main(["--list"]) == 0
  out = capsys.readouterr().out
  for name in ("mtat/{top50,all188}", "gtzan_filtered", "vocalset/{singer,technique}",
               "audio_folder/{unlabeled,labeled}"):
    assert name in out


def test_module_entry_point_help():
  result = subprocess.run([sys.executable, "-m", "data_pipelines.prepare", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 0 and "--manual_dir" in result.stdout


def test_other_min_samples_is_refused_not_reused(tmp_path, monkeypatch, capsys):
  manual, data = tmp_path / "gtzan", tmp_path / "data"
  _gtzan_manual(manual)
  monkeypatch.setenv("TFDS_DATA_DIR", str(data))  # No --data_dir: $TFDS_DATA_DIR decides.
  args = ["--dataset=gtzan_filtered", f"--manual_dir={manual}", "--num_workers=2"]
  assert prepare.main(args + [f"--min_samples={util.MIN_SAMPLES}"]) == 0
  assert (data / "gtzan_filtered" / "1.0.0" / "skipped-train.tsv").is_file()
  capsys.readouterr()
  assert prepare.main(args + [f"--min_samples={util.MIN_SAMPLES + 1}"]) == 2
  err = capsys.readouterr().err
  assert f"was prepared with min_samples={util.MIN_SAMPLES}, not {util.MIN_SAMPLES + 1}" in err
  with pytest.raises(base.MinSamplesMismatchError, match="Delete that folder"):
    tfds.builder("gtzan_filtered", data_dir=str(data), min_samples=decode.DEFAULT_MIN_SAMPLES)
  assert prepare.main(args) == 0  # No --min_samples: the prepared dataset as it is.
  out = capsys.readouterr().out
  assert out.startswith("Already prepared") and f"(min_samples={util.MIN_SAMPLES})" in out
