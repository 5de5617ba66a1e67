"""Device mesh, shardings, host→global batches and multi-process start-up.

One mesh axis, 'data'. Parameters and optimiser state are replicated; every batch array is
sharded on its leading (item) axis. The mesh uses Auto axis types (classic GSPMD propagation):
the loss is written as a function of the global batch and XLA row-shards the logit matrix and
computes BatchNorm statistics over the global batch. This is the one place the axis type is
chosen (jax.make_mesh defaults to Explicit axes since JAX 0.9; see DESIGN.md).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from absl import logging
import jax
import numpy as np

DATA_AXIS = "data"

# Environment variables that mean "this process is one of several": then jax.distributed must be
# initialised even if the config does not ask for it (Cloud TPU pods set TPU_WORKER_HOSTNAMES,
# SLURM sets SLURM_NTASKS, the JAX launcher contract uses JAX_COORDINATOR_ADDRESS).
_CLUSTER_ENV_VARS = ("JAX_COORDINATOR_ADDRESS",)


def _cluster_requests_distributed() -> bool:
  if any(os.environ.get(v) for v in _CLUSTER_ENV_VARS):
    return True
  if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
    return True
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h]) > 1


def maybe_initialize_distributed(distributed_config: Any) -> bool:
  """Starts jax.distributed when the config asks for it or a multi-host cluster is detected.

  Args:
    distributed_config: the `config.distributed` section (initialize, coordinator_address,
      num_processes, process_id).

  Returns:
    True if jax.distributed was initialised by this call.
  """
  if not (distributed_config.initialize or _cluster_requests_distributed()):
    return False
  kwargs: dict[str, Any] = {}
  if distributed_config.coordinator_address:
    kwargs["coordinator_address"] = distributed_config.coordinator_address
  if distributed_config.num_processes > 0:
    kwargs["num_processes"] = distributed_config.num_processes
  if distributed_config.process_id >= 0:
    kwargs["process_id"] = distributed_config.process_id
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d global devices.", jax.process_index(),
               jax.process_count(), jax.device_count())
  return True


def make_mesh(devices: Iterable[jax.Device] | None = None) -> jax.sharding.Mesh:
  """Returns a 1-D mesh with axis 'data' over all (global) devices, Auto axis type."""
  devices = np.asarray(list(devices) if devices is not None else jax.devices())
  return jax.sharding.Mesh(devices, (DATA_AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Sharding for parameters and optimiser state: a full copy on every device."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Sharding for batch arrays: leading axis split over 'data'."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS))


def host_batch_to_global(batch: Mapping[str, np.ndarray],
                         mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Assembles each host's batch into global arrays sharded on the leading axis.

  Args:
    batch: this process's slice of the global batch, each array [B_host, ...].
    mesh: the training mesh.

  Returns:
    Global arrays [B_host · process_count, ...], sharded on 'data'. The transfer is
    asynchronous.
  """
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def prefetch_to_mesh(host_batches: Iterator[Mapping[str, np.ndarray]],
                     mesh: jax.sharding.Mesh, size: int = 2) -> Iterator[dict[str, jax.Array]]:
  """Keeps `size` global batches in flight so host→device copies overlap the step."""
  queue: collections.deque[dict[str, jax.Array]] = collections.deque()

  def enqueue(n: int) -> None:
    for _ in range(n):
      try:
        queue.append(host_batch_to_global(next(host_batches), mesh))
      except StopIteration:
        return

  enqueue(size)
  while queue:
    yield queue.popleft()
    enqueue(1)
