"""Track embeddings from a frozen encoder: consecutive chunks → 512-d each → mean per track.

The encoder always runs in inference mode (`train=False`: BatchNorm uses its running
statistics and nothing is updated; the original's frozen encoder could run BatchNorm in train
mode during probing, spec §10.5). Chunks of several tracks share one fixed-size jitted batch
(the last one zero-padded), so a whole folder compiles once.

* `make_embed_fn(model, mesh, project)`: the jitted function on global batches.
* `ChunkEmbedder`: host NumPy chunks [n, T] → [n, D], any n.
* `iter_track_embeddings`: a stream of (key, waveform) → (key, chunk-mean [D], chunks), in
  order, batching across tracks.
* `embed_tracks`: a list of waveforms → [n, D].
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssc_jax import models
from ssc_jax import parallel


def split_into_chunks(audio: np.ndarray, view_length: int, max_chunks: int = 64) -> np.ndarray:
  """Splits one track into consecutive, non-overlapping chunks (spec §4.3).

  The last partial chunk is dropped; a track shorter than one chunk is zero-padded to one chunk
  only when it is the track's whole content (the embedding then sees trailing silence).

  Args:
    audio: [L] float32 mono audio.
    view_length: T, samples per chunk.
    max_chunks: keep at most this many leading chunks.

  Returns:
    [C, T] float32 with 1 <= C <= max_chunks.
  """
  n = len(audio) // view_length
  if n == 0:
    return np.pad(audio, (0, view_length - len(audio)))[None].astype(np.float32)
  n = min(n, max_chunks)
  return np.asarray(audio[:n * view_length], np.float32).reshape(n, view_length)


def make_embed_fn(model: models.SemiSupConModel, mesh: jax.sharding.Mesh | None = None, *,
                  project: bool = False) -> Callable[..., Any]:
  """Jitted encoder forward in inference mode.

  Args:
    model: the SemiSupCon model.
    mesh: if given, the batch is sharded on 'data' and the outputs are replicated (every
      process gets every row, which is what multi-host evaluation needs).
    project: also return the unit-norm projections ẑ = z / |z| (for prototypes).

  Returns:
    fn(variables, audio [B, T]) -> h [B, D] float32, or (h, ẑ [B, P]) when `project`.
  """

  def forward(variables, audio):
    if not project:
      return model.apply(variables, audio, train=False, method=model.embed)
    h, z = model.apply(variables, audio, train=False)
    z = z.astype(jnp.float32)
    return h, z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)

  if mesh is None:
    return jax.jit(forward)
  return jax.jit(forward, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))


def replicate(variables: Any, mesh: jax.sharding.Mesh | None) -> Any:
  """Puts variables on the devices once (replicated over `mesh`, or the default device)."""
  if mesh is None:
    return jax.device_put(variables)
  return jax.device_put(variables, parallel.replicated(mesh))


class ChunkEmbedder:
  """Embeds host chunks [n, T] in fixed-size jitted batches (one compilation).

  Args:
    model: the SemiSupCon model.
    variables: its {'params', 'batch_stats'}; never modified.
    batch_size: chunks per call; with a mesh it must divide by the mesh size.
    mesh: optional device mesh (single process) to shard each batch over.
  """

  def __init__(self, model: models.SemiSupConModel, variables: Any, *, batch_size: int = 32,
               mesh: jax.sharding.Mesh | None = None):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if mesh is not None and batch_size % mesh.size:
      raise ValueError(f"batch_size {batch_size} is not a multiple of the {mesh.size} devices.")
    self.batch_size = batch_size
    self._mesh = mesh
    self._fn = make_embed_fn(model, mesh)
    self._variables = replicate(variables, mesh)

  def __call__(self, chunks: np.ndarray) -> np.ndarray:
    """chunks: [n, T] float32 -> [n, D] float32 (NumPy)."""
    chunks = np.asarray(chunks, np.float32)
    outputs = []
    for start in range(0, len(chunks), self.batch_size):
      batch = chunks[start:start + self.batch_size]
      real = len(batch)
      batch = np.pad(batch, ((0, self.batch_size - real), (0, 0)))
      if self._mesh is not None:
        batch = jax.device_put(batch, parallel.batch_sharding(self._mesh))
      outputs.append(np.asarray(self._fn(self._variables, batch))[:real])
    if not outputs:
      raise ValueError("no chunks to embed.")
    return np.concatenate(outputs)


def iter_track_embeddings(embedder: Callable[[np.ndarray], np.ndarray],
                          tracks: Iterable[tuple[Any, np.ndarray]], view_length: int, *,
                          max_chunks: int = 64, batch_size: int = 32
                          ) -> Iterator[tuple[Any, np.ndarray, int]]:
  """Chunk-mean embeddings of a stream of tracks, batching chunks across tracks.

  Args:
    embedder: fn(chunks [b, T]) -> [b, D] (e.g. a ChunkEmbedder).
    tracks: (key, waveform [L] float32 mono at the model's rate) pairs.
    view_length: T, samples per chunk.
    max_chunks: chunks kept per track (the first ones).
    batch_size: chunks gathered before each embedder call.

  Yields:
    (key, embedding [D] float32, number of chunks averaged), in input order.
  """
  pending: collections.OrderedDict[int, list[Any]] = collections.OrderedDict()
  rows: list[np.ndarray] = []
  owners: list[int] = []

  def flush(count: int) -> Iterator[tuple[Any, np.ndarray, int]]:
    out = embedder(np.stack(rows[:count]))
    for owner, h in zip(owners[:count], out):
      entry = pending[owner]
      entry[1] = h.astype(np.float64) if entry[1] is None else entry[1] + h
      entry[2] -= 1
    del rows[:count], owners[:count]
    while pending and next(iter(pending.values()))[2] == 0:
      _, (key, total, _, n) = pending.popitem(last=False)
      yield key, (total / n).astype(np.float32), n

  for seq, (key, audio) in enumerate(tracks):
    chunks = split_into_chunks(np.asarray(audio, np.float32), view_length, max_chunks)
    pending[seq] = [key, None, len(chunks), len(chunks)]
    rows.extend(chunks)
    owners.extend([seq] * len(chunks))
    while len(rows) >= batch_size:
      yield from flush(batch_size)
  while rows:
    yield from flush(min(batch_size, len(rows)))


def embed_tracks(model: models.SemiSupConModel, variables: dict[str, Any],
                 tracks: Sequence[np.ndarray], view_length: int, *, batch_size: int = 32,
                 max_chunks: int = 64) -> np.ndarray:
  """Chunk-mean encoder embeddings of whole tracks, in inference mode (running BN stats).

  Args:
    model: the SemiSupCon model whose encoder is used.
    variables: {'params', 'batch_stats'} of `model`.
    tracks: n arrays [L_i] float32 at the model's sample rate.
    view_length: T, samples per chunk.
    batch_size: chunks per jitted call (the last batch is padded; one compilation).
    max_chunks: chunks per track kept (the first ones).

  Returns:
    [n, D] float32 embeddings.
  """
  embedder = ChunkEmbedder(model, variables, batch_size=batch_size)
  out = [h for _, h, _ in iter_track_embeddings(embedder, enumerate(tracks), view_length,
                                                  max_chunks=max_chunks, batch_size=batch_size)]
  return np.stack(out)
