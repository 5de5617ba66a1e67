"""The inference layer: loading an encoder (export or workdir checkpoint), chunk-mean embeddings
of waveforms and files through the API and the CLI, bad files skipped."""

import os

import flax.serialization
import jax
import numpy as np
import pytest
import soundfile as sf
import soxr

from configs import common
from ssc_jax import checkpoint
from ssc_jax import embed as embed_cli
from ssc_jax import models
from ssc_jax import parallel
from ssc_jax import train
from ssc_jax.inference import audio_files
from ssc_jax.inference import embedding
from ssc_jax.inference import encoder as encoder_lib
from ssc_jax.inference import pretrained

T = 59535


def test_track_stream_means_chunks_in_order_across_batches():
  # A fake "encoder": chunk -> [first sample, chunk length], so means are checkable by hand.
  fake = lambda chunks: np.stack([chunks[:, 0], np.full(len(chunks), chunks.shape[1])], 1)
  tracks = [("a", np.repeat(np.arange(5.0), 10)),  # 5 chunks of 10; keep 3: 0, 1, 2
            ("b", np.full(7, 9.0)),  # shorter than a chunk: one zero-padded chunk
            ("c", np.repeat([4.0, 6.0], 10))]
  out = list(embedding.iter_track_embeddings(fake, tracks, 10, max_chunks=3, batch_size=2))
  assert [k for k, _, _ in out] == ["a", "b", "c"]
  assert [n for _, _, n in out] == [3, 1, 2]
  np.testing.assert_allclose([h for _, h, _ in out], [[1.0, 10], [9.0, 10], [5.0, 10]])


def calibrated_variables(model, seed: int = 0):
  """Random-init variables whose BatchNorm running statistics are adapted to audio.

  At init the running statistics are (0, 1), and in inference mode the network then maps
  every input to almost the same vector, so comparisons between embeddings could not fail.
  Thirty train-mode passes over tones-plus-noise move the statistics to realistic values.
  """
  variables = models.init_variables(model, jax.random.key(seed), T)
  rng = np.random.default_rng(seed)
  t = np.arange(T) / 22050.0
  freqs = rng.uniform(80, 2000, (8, 3, 1))
  audio = (0.3 * np.sin(2 * np.pi * freqs * t).sum(1)
           + rng.uniform(0.01, 0.2, (8, 1)) * rng.standard_normal((8, T))).astype(np.float32)
  update = jax.jit(lambda v: model.apply(v, audio, train=True,
                                         mutable=["batch_stats"])[1]["batch_stats"])
  for _ in range(30):
    variables = {"params": variables["params"], "batch_stats": update(variables)}
  return jax.device_get(variables)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, small_encoder):
  model_config, model, variables = small_encoder  # conftest: calibrated_variables, width 0.125.
  path = str(tmp_path_factory.mktemp("enc") / "encoder.msgpack")
  checkpoint.export_variables(path, variables, model_config, sample_rate=22050, view_length=T)
  return path, model, jax.device_get(variables)


def _reference(model, variables, mono22k):
  """Independent path: plain model.apply per chunk (inference mode), then the mean."""
  n = len(mono22k) // T
  chunks = mono22k[:n * T].reshape(n, T)
  return np.asarray(model.apply(variables, chunks, train=False, method=model.embed)).mean(0)


def test_api_embeds_stereo_at_any_rate_like_the_reference(exported):
  path, model, variables = exported
  rng = np.random.default_rng(0)
  stereo = (0.1 * rng.standard_normal((2 * 44100 * 3 + 100, 2))).astype(np.float32)  # ~6 s
  enc = encoder_lib.load_encoder(path, batch_size=4)
  assert (enc.sample_rate, enc.view_length, enc.embedding_dim) == (22050, T, 64)
  mono = soxr.resample(stereo.mean(1), 44100, 22050, quality="HQ").astype(np.float32)
  expected = _reference(model, variables, mono)
  h = enc.embed(stereo, 44100)
  assert h.shape == (64,)
  # Without resampling (or mixing the channels differently) the embedding would differ.
  wrong = _reference(model, variables, stereo[:, 0])
  assert np.abs(wrong - expected).max() > 100 * np.abs(h - expected).max()
  np.testing.assert_allclose(h, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(enc.embed(stereo.T, 44100), h, rtol=1e-6, atol=1e-7)  # [C, L]
  assert enc.embed_chunks(stereo, 44100).shape == (len(mono) // T, 64)
  many = enc.embed_many([stereo, stereo[:44100 * 3]], 44100)
  np.testing.assert_allclose(many[0], h, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="NaN"):
    enc.embed(np.full(100, np.nan), 22050)
  with pytest.raises(ValueError, match="shape"):
    enc.embed(np.zeros((2, 2, 2)), 22050)


def test_cli_embeds_files_and_folders_and_skips_unreadable(exported, tmp_path, capsys):
  path, model, variables = exported
  rng = np.random.default_rng(1)
  music = tmp_path / "music"
  (music / "sub").mkdir(parents=True)
  mono = (0.1 * rng.standard_normal(2 * T + 10)).astype(np.float32)
  sf.write(music / "a.wav", mono, 22050, subtype="FLOAT")
  stereo = (0.1 * rng.standard_normal((44100 * 3, 2))).astype(np.float32)
  sf.write(music / "sub" / "b.flac", stereo, 44100)
  (music / "broken.wav").write_bytes(b"RIFF....not really a wav file")
  (music / "empty.mp3").write_bytes(b"")
  (music / "notes.txt").write_text("not audio, not listed")
  out = tmp_path / "out" / "emb.npz"
  assert embed_cli.main([f"--params={path}", f"--out={out}", "--batch_size=8", str(music),
                         str(tmp_path / "missing.wav")]) == 0
  data = np.load(out)
  names = [os.path.relpath(p, music) for p in data["paths"]]
  assert names == ["a.wav", "sub/b.flac"]
  assert data["embeddings"].shape == (2, 64) and list(data["num_chunks"]) == [2, 1]
  assert np.abs(data["embeddings"][0] - data["embeddings"][1]).max() > 1e-2
  np.testing.assert_allclose(data["embeddings"][0], _reference(model, variables, mono),
                             rtol=1e-4, atol=1e-5)
  skipped = sorted(os.path.basename(p) for p in data["skipped_paths"])
  assert skipped == ["broken.wav", "empty.mp3", "missing.wav"]
  assert "skipped" in capsys.readouterr().err

  csv_out = tmp_path / "emb.csv"
  assert embed_cli.main([f"--params={path}", f"--out={csv_out}", "--batch_size=8",
                         str(music / "a.wav"), str(music / "broken.wav")]) == 0
  lines = csv_out.read_text().splitlines()
  assert lines[0].startswith("path,num_chunks,duration_s,e0,e1") and len(lines) == 2
  assert "broken.wav" in (tmp_path / "emb.csv.skipped.tsv").read_text()
  with pytest.raises(SystemExit):  # --out of an unknown format
    embed_cli.main([f"--params={path}", "--out=emb.txt", str(music)])


def test_card_alone_sets_rate_and_chunk_length_for_the_cli(small_encoder, tmp_path):
  model_config, model, variables = small_encoder
  path = str(tmp_path / "alone" / "encoder.msgpack")  # No config.json next to it.
  checkpoint.export_variables(path, variables, model_config, sample_rate=16000,
                              view_length=59049)
  loaded = pretrained.load_pretrained(path)
  assert (loaded.sample_rate, loaded.view_length) == (16000, 59049)
  audio = (0.1 * np.random.default_rng(3).standard_normal(22050 * 6)).astype(np.float32)
  sf.write(tmp_path / "a.wav", audio, 22050, subtype="FLOAT")
  out = tmp_path / "emb.npz"
  assert embed_cli.main([f"--params={path}", f"--out={out}", str(tmp_path / "a.wav")]) == 0
  data = np.load(out)
  assert (int(data["sample_rate"]), int(data["view_length"])) == (16000, 59049)
  mono16k = soxr.resample(audio, 22050, 16000, quality="HQ").astype(np.float32)
  chunks = mono16k[:59049].reshape(1, 59049)  # 6 s at 16 kHz: one 59049-sample chunk.
  expected = np.asarray(model.apply(variables, chunks, train=False, method=model.embed))[0]
  wrong = np.asarray(model.apply(variables, audio[None, :59049], train=False,
                                 method=model.embed))[0]
  assert np.abs(wrong - expected).max() > 100 * np.abs(data["embeddings"][0] - expected).max()
  np.testing.assert_allclose(data["embeddings"][0], expected, rtol=1e-4, atol=1e-5)


def test_old_export_without_card_warns_with_the_values_used(exported, tmp_path):
  path = exported[0]
  tree = flax.serialization.msgpack_restore(open(path, "rb").read())
  del tree["ssc_jax"]["card"]
  old = tmp_path / "encoder.msgpack"
  old.write_bytes(flax.serialization.msgpack_serialize(tree))
  with pytest.warns(UserWarning, match="22050 Hz and view length 59535 samples from the "
                                       "SemiSupCon defaults"):
    loaded = pretrained.load_pretrained(str(old))
  assert loaded.card is None
  (tmp_path / "config.json").write_text('{"data": {"sample_rate": 16000, "view_length": 60000}}')
  with pytest.warns(UserWarning, match="16000 Hz and view length 60000 samples from .*config"):
    loaded = pretrained.load_pretrained(str(old))
  assert (loaded.sample_rate, loaded.view_length) == (16000, 60000)


def test_layer_and_projection_outputs(exported, tmp_path):
  path, model, variables = exported
  audio = (0.1 * np.random.default_rng(4).standard_normal(2 * T + 5)).astype(np.float32)
  enc = encoder_lib.load_encoder(path, batch_size=8)
  out = enc.embed(audio, 22050, layers=(0, 4, 7, 10), projection=True)
  # Width 0.125: blocks 0-2 have 16 channels, 3-8 32, 9-10 64; the head gives 128.
  assert {k: v.shape for k, v in out.items()} == {
      "embedding": (64,), "layer0": (16,), "layer4": (32,), "layer7": (32,), "layer10": (64,),
      "projection": (128,)}
  np.testing.assert_array_equal(out["layer10"], out["embedding"])
  np.testing.assert_allclose(out["embedding"], enc.embed(audio, 22050), rtol=1e-6, atol=1e-7)
  chunks = audio[:2 * T].reshape(2, T)
  _, z = model.apply(variables, chunks, train=False)
  np.testing.assert_allclose(out["projection"], np.asarray(z).mean(0), rtol=1e-4, atol=1e-5)
  assert np.abs(out["layer4"]).max() > 0 and np.abs(out["layer0"] - out["layer0"].mean()).max() > 0
  with pytest.raises(ValueError, match=r"layers \[11\] do not exist"):
    enc.embed(audio, 22050, layers=(11,))

  sf.write(tmp_path / "a.wav", audio, 22050, subtype="FLOAT")
  npz, csv_out = tmp_path / "e.npz", tmp_path / "e.csv"
  for dest in (npz, csv_out):
    assert embed_cli.main([f"--params={path}", f"--out={dest}", "--layers=4,10", "--projection",
                           "--batch_size=8", str(tmp_path / "a.wav")]) == 0
  data = np.load(npz)
  np.testing.assert_allclose(data["layer4"][0], out["layer4"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(data["projection"][0], out["projection"], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(data["layer10"], data["embeddings"])
  header = csv_out.read_text().splitlines()[0].split(",")
  assert header[3:5] == ["e0", "e1"] and "layer4_31" in header and header[-1] == "projection_127"
  assert len(header) == 3 + 64 + 32 + 64 + 128


def test_audio_listing_and_layouts(tmp_path):
  (tmp_path / "x").mkdir()
  for name in ("b.WAV", "a.mp3", "c.txt"):
    (tmp_path / "x" / name).write_bytes(b"")
  files = audio_files.list_audio_files([str(tmp_path / "x"), "nowhere.ogg"])
  assert [os.path.basename(f) for f in files] == ["a.mp3", "b.WAV", "nowhere.ogg"]
  with pytest.raises(audio_files.DecodeError, match="missing"):
    audio_files.load_audio("nowhere.ogg", 22050)
  np.testing.assert_allclose(audio_files.to_mono(np.array([[1.0, 3.0]] * 5)), np.full(5, 2.0))


def test_load_pretrained_from_a_checkpoint_workdir(tmp_path):
  config = common.base_config()
  config.model.width = 0.125
  workdir = str(tmp_path)
  with pytest.raises(ValueError, match="config.json"):
    pretrained.load_pretrained(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort())
  with pytest.raises(FileNotFoundError, match="neither encoder.msgpack nor any checkpoint"):
    pretrained.load_pretrained(workdir)
  # Saved from all 8 devices; restored without an optimizer, as host arrays.
  mesh = parallel.make_mesh()
  model = models.build_model(config.model)
  state = train.create_train_state(config, model, train.make_optimizer(config), mesh,
                                   jax.random.key(3))
  ckpt = checkpoint.Checkpointer(workdir)
  ckpt.save(7, state)
  ckpt.close()
  loaded = pretrained.load_pretrained(workdir)
  assert loaded.source.endswith("(checkpoint step 7)") and loaded.view_length == T
  jax.tree.map(np.testing.assert_array_equal, loaded.variables,
               jax.device_get(state.variables))
  with pytest.raises(FileNotFoundError, match="no such file"):
    pretrained.load_pretrained(str(tmp_path / "nope"))
