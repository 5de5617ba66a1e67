"""Python API for embeddings: `load_encoder(path).embed(waveform, sample_rate)`.

  import ssc_jax
  encoder = ssc_jax.load_encoder("workdirs/demo")         # or ".../encoder.msgpack"
  h = encoder.embed(waveform, sample_rate=44100)           # [512] chunk-mean representation
  H = encoder.embed_chunks(waveform, 44100)                # [C, 512], one row per 2.7 s chunk
  hs = encoder.embed_many([w1, w2], 44100)                 # [2, 512], chunks batched together
  h = encoder.embed_file("song.mp3")
  out = encoder.embed(waveform, 44100, layers=(4, 7, 10), projection=True)
  # {'embedding': [512], 'layer4': [256], 'layer7': [256], 'layer10': [512], 'projection': [128]}

Waveforms may be mono [L] or multi-channel ([L, C] or [C, L]; channels are averaged) at any
sample rate (resampled with soxr to the rate in the encoder's model card). A track is cut into
consecutive chunks of the card's view length (59535 samples = 2.7 s for SemiSupCon), at most
`max_chunks` (the first ones; the last partial chunk is dropped, a track shorter than one chunk
is zero-padded); the encoder runs in inference mode on every local device (chunks are sharded
over them) and the chunk outputs are averaged.

`layers` selects encoder blocks (SampleCNN 0–10, TUNe+ 1–18): each gives the mean over time of
the block's output channels (MARBLE-style layer-wise features); SampleCNN's block 10 is the
representation itself. `projection=True` adds the projection head's output (not normalised).
With either, the methods return a dict of arrays instead of one array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssc_jax import models
from ssc_jax.inference import audio_files
from ssc_jax.inference import embedding
from ssc_jax.inference import pretrained


class Encoder:
  """A frozen pretrained encoder with a batched, jitted embedding function.

  Attributes:
    model: the Flax SemiSupConModel.
    variables: its {'params', 'batch_stats'}.
    sample_rate: Hz the encoder expects (input is resampled to it).
    view_length: samples per chunk.
    embedding_dim: D.
    encoder_name: "samplecnn" or "tuneplus".
    blocks: block indices `layers` may name.
    max_chunks: default number of leading chunks averaged per track.
    source: where the weights came from.
    card: the export's model card (None for a workdir checkpoint or an old export).
  """

  def __init__(self, encoder: pretrained.PretrainedEncoder, *, batch_size: int = 32,
               max_chunks: int = 64, view_length: int | None = None):
    self.model = encoder.model
    self.variables = encoder.variables
    self.sample_rate = encoder.sample_rate
    self.view_length = int(view_length or encoder.view_length)
    models.check_view_length(encoder.model_config.encoder, self.view_length)
    self.embedding_dim = encoder.embedding_dim
    self.encoder_name = encoder.model_config.encoder
    self.blocks = models.encoder_blocks(self.encoder_name)
    self.max_chunks = max_chunks
    self.source = encoder.source
    self.card = encoder.card
    self.batch_size = batch_size
    self._embedders: dict[tuple[tuple[int, ...], bool], embedding.ChunkEmbedder] = {}

  def _embedder(self, layers: Sequence[int], projection: bool) -> embedding.ChunkEmbedder:
    key = (models.check_layers(self.encoder_name, layers), bool(projection))
    if key not in self._embedders:
      self._embedders[key] = embedding.local_embedder(
          self.model, self.variables, batch_size=self.batch_size, layers=key[0],
          projection=key[1])
    return self._embedders[key]

  def _prepare(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    return audio_files.prepare_waveform(waveform, sample_rate, self.sample_rate)

  def embed_chunks(self, waveform: np.ndarray, sample_rate: int, max_chunks: int | None = None,
                   *, layers: Sequence[int] = (), projection: bool = False
                   ) -> np.ndarray | dict[str, np.ndarray]:
    """Per-chunk outputs of one waveform: [C, D] float32 (or a dict of [C, dim], see above)."""
    embedder = self._embedder(layers, projection)
    chunks = embedding.split_into_chunks(self._prepare(waveform, sample_rate),
                                         self.view_length, max_chunks or self.max_chunks)
    rows = embedder(chunks)
    return rows if len(embedder.names) == 1 else embedder.split(rows)

  def embed(self, waveform: np.ndarray, sample_rate: int, max_chunks: int | None = None, *,
            layers: Sequence[int] = (), projection: bool = False
            ) -> np.ndarray | dict[str, np.ndarray]:
    """Chunk-mean output of one waveform: [D] float32 (or a dict of [dim])."""
    out = self.embed_many([waveform], sample_rate, max_chunks, layers=layers,
                          projection=projection)
    return out[0] if isinstance(out, np.ndarray) else {k: v[0] for k, v in out.items()}

  def embed_many(self, waveforms: Sequence[np.ndarray], sample_rate: int,
                 max_chunks: int | None = None, *, layers: Sequence[int] = (),
                 projection: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """Chunk-mean outputs of several waveforms, [n, D] (or a dict of [n, dim]); chunks are
    batched across them."""
    embedder = self._embedder(layers, projection)
    tracks = ((i, self._prepare(w, sample_rate)) for i, w in enumerate(waveforms))
    out = [h for _, h, _ in embedding.iter_track_embeddings(
        embedder, tracks, self.view_length, max_chunks=max_chunks or self.max_chunks,
        batch_size=embedder.batch_size)]
    if not out:
      raise ValueError("no waveforms given.")
    rows = np.stack(out)
    return rows if len(embedder.names) == 1 else embedder.split(rows)

  def embed_file(self, path: str, max_chunks: int | None = None, *, layers: Sequence[int] = (),
                 projection: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """Chunk-mean output of an audio file (raises DecodeError if unreadable)."""
    return self.embed(audio_files.load_audio(path, self.sample_rate), self.sample_rate,
                      max_chunks, layers=layers, projection=projection)


def load_encoder(path: str, *, batch_size: int = 32, max_chunks: int = 64,
                 view_length: int | None = None, dtype: str = "") -> Encoder:
  """Loads a pretrained encoder for embedding.

  Args:
    path: an exported `encoder.msgpack`, or a pretraining workdir (its export, else its newest
      checkpoint).
    batch_size: chunks per jitted call (rounded up to a multiple of the local devices).
    max_chunks: default leading chunks averaged per track.
    view_length: samples per chunk (default: the model card's view length).
    dtype: compute dtype, "float32" or "bfloat16" (default: the pretraining run's).

  Returns:
    An Encoder.
  """
  return Encoder(pretrained.load_pretrained(path, dtype), batch_size=batch_size,
                 max_chunks=max_chunks, view_length=view_length)
