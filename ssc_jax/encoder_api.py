"""Python API for embeddings: `load_encoder(path).embed(waveform, sample_rate)`.

  import ssc_jax
  encoder = ssc_jax.load_encoder("workdirs/demo")         # or ".../encoder.msgpack"
  h = encoder.embed(waveform, sample_rate=44100)           # [512] chunk-mean representation
  H = encoder.embed_chunks(waveform, 44100)                # [C, 512], one row per 2.7 s chunk
  hs = encoder.embed_many([w1, w2], 44100)                 # [2, 512], chunks batched together
  h = encoder.embed_file("song.mp3")

Waveforms may be mono [L] or multi-channel ([L, C] or [C, L]; channels are averaged) at any
sample rate (resampled with soxr to the encoder's 22050 Hz). A track is cut into consecutive
chunks of the pretraining view length (59535 samples = 2.7 s), at most `max_chunks` (the first
ones; the last partial chunk is dropped, a track shorter than one chunk is zero-padded); the
encoder runs in inference mode and the chunk representations are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssc_jax import models
from ssc_jax.evaluation import audio_files
from ssc_jax.evaluation import embed as embed_lib
from ssc_jax.evaluation import pretrained


class Encoder:
  """A frozen pretrained encoder with a batched, jitted embedding function.

  Attributes:
    model: the Flax SemiSupConModel.
    variables: its {'params', 'batch_stats'}.
    sample_rate: Hz the encoder expects (input is resampled to it).
    view_length: samples per chunk.
    embedding_dim: D.
    max_chunks: default number of leading chunks averaged per track.
    source: where the weights came from.
  """

  def __init__(self, encoder: pretrained.PretrainedEncoder, *, batch_size: int = 32,
               max_chunks: int = 64, view_length: int | None = None):
    self.model = encoder.model
    self.variables = encoder.variables
    self.sample_rate = encoder.sample_rate
    self.view_length = int(view_length or encoder.view_length)
    models.check_view_length(encoder.model_config.encoder, self.view_length)
    self.embedding_dim = encoder.embedding_dim
    self.max_chunks = max_chunks
    self.source = encoder.source
    self.batch_size = batch_size
    self._embedder = embed_lib.ChunkEmbedder(self.model, self.variables, batch_size=batch_size)

  def _prepare(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    return audio_files.prepare_waveform(waveform, sample_rate, self.sample_rate)

  def embed_chunks(self, waveform: np.ndarray, sample_rate: int,
                   max_chunks: int | None = None) -> np.ndarray:
    """Per-chunk representations [C, D] float32 of one waveform."""
    chunks = embed_lib.split_into_chunks(self._prepare(waveform, sample_rate),
                                         self.view_length, max_chunks or self.max_chunks)
    return self._embedder(chunks)

  def embed(self, waveform: np.ndarray, sample_rate: int,
            max_chunks: int | None = None) -> np.ndarray:
    """Chunk-mean representation [D] float32 of one waveform."""
    return self.embed_chunks(waveform, sample_rate, max_chunks).mean(axis=0)

  def embed_many(self, waveforms: Sequence[np.ndarray], sample_rate: int,
                 max_chunks: int | None = None) -> np.ndarray:
    """Chunk-mean representations [n, D] of several waveforms (chunks batched across them)."""
    tracks = ((i, self._prepare(w, sample_rate)) for i, w in enumerate(waveforms))
    out = [h for _, h, _ in embed_lib.iter_track_embeddings(
        self._embedder, tracks, self.view_length, max_chunks=max_chunks or self.max_chunks,
        batch_size=self.batch_size)]
    if not out:
      raise ValueError("no waveforms given.")
    return np.stack(out)

  def embed_file(self, path: str, max_chunks: int | None = None) -> np.ndarray:
    """Chunk-mean representation [D] of an audio file (raises DecodeError if unreadable)."""
    return self.embed(audio_files.load_audio(path, self.sample_rate), self.sample_rate,
                      max_chunks)


def load_encoder(path: str, *, batch_size: int = 32, max_chunks: int = 64,
                 view_length: int | None = None, dtype: str = "") -> Encoder:
  """Loads a pretrained encoder for embedding.

  Args:
    path: an exported `encoder.msgpack`, or a pretraining workdir (its export, else its newest
      checkpoint).
    batch_size: chunks per jitted call.
    max_chunks: default leading chunks averaged per track.
    view_length: samples per chunk (default: the pretraining view length).
    dtype: compute dtype, "float32" or "bfloat16" (default: the pretraining run's).

  Returns:
    An Encoder.
  """
  return Encoder(pretrained.load_pretrained(path, dtype), batch_size=batch_size,
                 max_chunks=max_chunks, view_length=view_length)
