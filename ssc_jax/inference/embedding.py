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


def _jit_on_mesh(forward: Callable[..., Any], mesh: jax.sharding.Mesh | None
                 ) -> Callable[..., Any]:
  """jit(forward(variables, audio)); with a mesh the batch is sharded on 'data' and the
  outputs are replicated (every process gets every row, as multi-host evaluation needs)."""
  if mesh is None:
    return jax.jit(forward)
  return jax.jit(forward, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))


def make_embed_fn(model: models.SemiSupConModel, mesh: jax.sharding.Mesh | None = None, *,
                  project: bool = False) -> Callable[..., Any]:
  """Jitted encoder forward in inference mode.

  Args:
    model: the SemiSupCon model.
    mesh: if given, the batch is sharded on 'data' and the outputs are replicated.
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

  return _jit_on_mesh(forward, mesh)


def output_names(layers: Sequence[int] = (), projection: bool = False) -> list[str]:
  """Names of the outputs `make_outputs_fn` returns, in order."""
  return (["embedding"] + [f"layer{i}" for i in layers]
          + (["projection"] if projection else []))


def make_outputs_fn(model: models.SemiSupConModel, mesh: jax.sharding.Mesh | None = None, *,
                    layers: Sequence[int] = (), projection: bool = False) -> Callable[..., Any]:
  """Jitted inference forward returning the representation, chosen blocks and projection.

  Args:
    model: the SemiSupCon model.
    mesh: optional device mesh (see `make_embed_fn`).
    layers: encoder block indices (`models.encoder_blocks`) whose channel means over time are
      returned.
    projection: also return the projection head's output z (not normalised).

  Returns:
    fn(variables, audio [B, T]) -> list of [B, dim] float32 arrays, one per name in
    `output_names(layers, projection)`.
  """
  layers = tuple(layers)
  if projection and model.head is None:
    raise ValueError("projection requested, but the model has no projection head (it was "
                     "converted from a checkpoint without one).")

  def forward(variables, audio):
    out, state = model.apply(variables, audio, train=False,
                             method=None if projection else model.embed,
                             mutable=["intermediates"])
    h, z = out if projection else (out, None)
    blocks = state["intermediates"]["encoder"] if layers else {}
    values = [h] + [blocks[f"layer{i}"][0] for i in layers] + ([z] if projection else [])
    return [v.astype(jnp.float32) for v in values]

  return _jit_on_mesh(forward, mesh)


def replicate(variables: Any, mesh: jax.sharding.Mesh | None) -> Any:
  """Puts variables on the devices once (replicated over `mesh`, or the default device)."""
  if mesh is None:
    return jax.device_put(variables)
  return jax.device_put(variables, parallel.replicated(mesh))


class ChunkEmbedder:
  """Embeds host chunks [n, T] in fixed-size jitted batches (one compilation).

  With `layers` or `projection`, each row is the concatenation of the outputs named by
  `names` (representation first); `split` cuts rows (or their means) back into named arrays.

  Args:
    model: the SemiSupCon model.
    variables: its {'params', 'batch_stats'}; never modified.
    batch_size: chunks per call; with a mesh it must divide by the mesh size.
    mesh: optional device mesh (single process) to shard each batch over.
    layers: encoder blocks whose channel means are appended (see `make_outputs_fn`).
    projection: append the projection output.
  """

  def __init__(self, model: models.SemiSupConModel, variables: Any, *, batch_size: int = 32,
               mesh: jax.sharding.Mesh | None = None, layers: Sequence[int] = (),
               projection: bool = False):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if mesh is not None and batch_size % mesh.size:
      raise ValueError(f"batch_size {batch_size} is not a multiple of the {mesh.size} devices.")
    self.batch_size = batch_size
    self.names = output_names(layers, projection)
    self._sizes: list[int] | None = None
    self._mesh = mesh
    self._fn = make_outputs_fn(model, mesh, layers=layers, projection=projection)
    self._variables = replicate(variables, mesh)

  def __call__(self, chunks: np.ndarray) -> np.ndarray:
    """chunks: [n, T] float32 -> [n, total output size] float32 (NumPy)."""
    chunks = np.asarray(chunks, np.float32)
    outputs = []
    for start in range(0, len(chunks), self.batch_size):
      batch = chunks[start:start + self.batch_size]
      real = len(batch)
      batch = np.pad(batch, ((0, self.batch_size - real), (0, 0)))
      if self._mesh is not None:
        batch = jax.device_put(batch, parallel.batch_sharding(self._mesh))
      parts = [np.asarray(v) for v in self._fn(self._variables, batch)]
      self._sizes = [p.shape[-1] for p in parts]
      outputs.append(np.concatenate(parts, axis=-1)[:real])
    if not outputs:
      raise ValueError("no chunks to embed.")
    return np.concatenate(outputs)

  def split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Cuts rows [..., total] of `__call__`'s output into {name: [..., dim]}."""
    if self._sizes is None:
      raise ValueError("split() needs one call first (output sizes are not known yet).")
    cuts = np.cumsum(self._sizes)[:-1]
    return dict(zip(self.names, np.split(rows, cuts, axis=-1)))


def local_embedder(model: models.SemiSupConModel, variables: Any, *, batch_size: int = 32,
                   layers: Sequence[int] = (), projection: bool = False) -> ChunkEmbedder:
  """A ChunkEmbedder over every local device (batch_size rounded up to a multiple of them)."""
  devices = jax.local_devices()
  batch_size = -(-batch_size // len(devices)) * len(devices)
  mesh = parallel.make_mesh(devices) if len(devices) > 1 else None
  return ChunkEmbedder(model, variables, batch_size=batch_size, mesh=mesh, layers=layers,
                       projection=projection)


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
