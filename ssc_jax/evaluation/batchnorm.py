"""BatchNorm running statistics recalibrated on audio, for probing an encoder at random init.

Why: an encoder at its initialisation, run in inference mode, maps every clip to almost the same
vector. PyTorch-default init shrinks activations layer by layer, and the init-time running
statistics (mean 0, var 1) do not undo it, so embeddings of different clips differ by ~1e-7 of
their size and every probe on them sits at chance. A random-init *reference* must instead see
what the architecture does with normalised activations, as it would after a few training steps.

`recalibrate` replaces every BatchNorm layer's running statistics by the average over some
batches of the statistics that layer computes in train mode (`torch.optim.swa_utils.update_bn`
with a cumulative average): for each batch, the model runs in train mode (every BatchNorm
normalises with its own batch statistics, so a layer's input is what the layers below produce
with batch statistics); the running mean becomes the mean over batches of the per-channel batch
means of the layer's input, the running variance the mean over batches of the per-channel
unbiased batch variances. Parameters are not changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssc_jax import models
from ssc_jax import parallel
from ssc_jax.models import layers


def make_batch_stats_fn(model: models.SemiSupConModel, mesh: jax.sharding.Mesh):
  """Jitted fn(variables, audio [B, T]) -> every BatchNorm's train-mode statistics of the batch.

  Returns a tree like `variables['batch_stats']`: 'mean' = per-channel batch mean of the layer
  input, 'var' = its unbiased per-channel batch variance, each [C] float32 (replicated).
  """
  momentum = layers.TorchBatchNorm.momentum

  def stats(variables, audio):
    # With running statistics 0, one train-mode update leaves momentum · (batch statistic).
    zero = jax.tree.map(jnp.zeros_like, variables["batch_stats"])
    _, updated = model.apply({"params": variables["params"], "batch_stats": zero}, audio,
                             train=True, method=model.embed, mutable=["batch_stats"])
    return jax.tree.map(lambda s: s / momentum, updated["batch_stats"])

  return jax.jit(stats, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))


def recalibrate(model: models.SemiSupConModel, variables: dict[str, Any],
                mesh: jax.sharding.Mesh, host_batches: Iterable[np.ndarray],
                num_batches: int) -> dict[str, Any]:
  """Variables with every BatchNorm's running statistics averaged over `num_batches` batches.

  Args:
    model: the SemiSupCon model.
    variables: {'params', 'batch_stats'} (replicated over `mesh` or host arrays); not modified.
    mesh: the device mesh.
    host_batches: this host's share of each global batch of audio, [B_host, T] float32 (at
      least 2 rows per global batch; train-mode BatchNorm needs more than one value).
    num_batches: batches to average over (>= 1).

  Returns:
    {'params': unchanged, 'batch_stats': the averaged statistics} as host NumPy arrays.

  Raises:
    ValueError: num_batches < 1, or the stream ended before num_batches batches.
  """
  if num_batches < 1:
    raise ValueError(f"BatchNorm recalibration needs >= 1 batch, got {num_batches}.")
  stats_fn = make_batch_stats_fn(model, mesh)
  total, seen = None, 0
  for audio in host_batches:
    batch = parallel.host_batch_to_global({"audio": np.asarray(audio, np.float32)}, mesh)
    stats = jax.device_get(stats_fn(variables, batch["audio"]))
    stats = jax.tree.map(lambda s: np.asarray(s, np.float64), stats)
    total = stats if total is None else jax.tree.map(np.add, total, stats)
    seen += 1
    if seen == num_batches:
      break
  if seen < num_batches:
    raise ValueError(f"BatchNorm recalibration: the audio stream ended after {seen} of "
                     f"{num_batches} batches.")
  averaged = jax.tree.map(lambda s: (s / seen).astype(np.float32), total)
  return {"params": jax.device_get(variables["params"]), "batch_stats": averaged}
