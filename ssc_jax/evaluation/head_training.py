"""Training a probe head on precomputed representations, with early stopping (spec §7.1).

The optimiser is the original's: Adam with coupled L2 weight decay (PyTorch `Adam(weight_decay)`
adds `wd · param` to the gradient before the moments; this is not AdamW), constant learning
rate. Losses: BCE with logits (multi-label), softmax cross-entropy on one-hot targets
(multi-class), MSE (regression), each averaged like the PyTorch defaults.

Early stopping always runs (the original only ran it when wandb logging was on, spec §10.6):
after every epoch the DATASET-level validation loss (validation tracks' chunk-mean
representations, as at test time) is computed; training stops once it has not improved for
`patience` epochs, and the head with the lowest validation loss is returned.

One epoch visits every training clip once (a permutation, in batches of `batch_size`; the last
batch is partial and its loss is the mean over its real rows). Which representation stands for
a clip in an epoch is up to the caller (`EpochSampler`): one random cached crop per clip, or a
freshly encoded random crop. An epoch is one jitted `lax.scan` over its batches.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssc_jax.evaluation import heads
from ssc_jax.evaluation import metrics

# fn(epoch, rng) -> (features [N, D], targets [N, K], rows [n] int: the rows of this epoch, one
# per training clip). The features may stay the same array every epoch (cached crops).
EpochSampler = Callable[[int, np.random.Generator], tuple[Any, Any, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  """Everything that defines a probe head and its training.

  Attributes:
    kind: "multilabel", "multiclass" or "regression" (selects the loss).
    num_outputs: K.
    hidden: hidden width of the MLP head; 0 = linear head.
    use_bias: biases in the head (False = the original).
    dropout: dropout after the hidden ReLU.
    learning_rate: Adam learning rate.
    weight_decay: coupled L2 coefficient.
    batch_size: clips per step.
    max_epochs: epoch limit.
    patience: epochs without a validation-loss improvement before stopping.
    seed: seeds the head init, the epoch permutations and dropout.
  """
  kind: str
  num_outputs: int
  hidden: int = 512
  use_bias: bool = False
  dropout: float = 0.0
  learning_rate: float = 3e-4
  weight_decay: float = 1e-6
  batch_size: int = 64
  max_epochs: int = 100
  patience: int = 15
  seed: int = 0

  @classmethod
  def from_probe_config(cls, probe: ml_collections.ConfigDict, kind: str, num_outputs: int,
                        seed: int, learning_rate: float | None = None) -> HeadConfig:
    """Builds it from the `probe` section of configs/probe.py."""
    if probe.head not in ("linear", "mlp"):
      raise ValueError(f"config.probe.head must be 'linear' or 'mlp', got {probe.head!r}.")
    return cls(kind=kind, num_outputs=num_outputs,
               hidden=probe.hidden if probe.head == "mlp" else 0, use_bias=probe.use_bias,
               dropout=probe.dropout,
               learning_rate=probe.learning_rate if learning_rate is None else learning_rate,
               weight_decay=probe.weight_decay, batch_size=probe.batch_size,
               max_epochs=probe.max_epochs, patience=probe.patience, seed=seed)

  def module(self) -> heads.ProbeHead:
    return heads.ProbeHead(num_outputs=self.num_outputs, hidden=self.hidden,
                           use_bias=self.use_bias, dropout=self.dropout)


@dataclasses.dataclass(frozen=True)
class Standardizer:
  """Per-dimension standardisation of features, (x - mean) / std, fitted on training features.

  Attributes:
    mean: [D] float32 per-dimension mean of the training features.
    std: [D] float32 per-dimension standard deviation (population); 1 where it is 0, so a
      constant dimension becomes 0 instead of NaN.
  """
  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, x: Any) -> Standardizer:
    """Statistics of training features x [n, D], computed in float64."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) == 0:
      raise ValueError(f"standardisation needs training features [n >= 1, D], got {x.shape}.")
    std = x.std(axis=0)
    return cls(mean=x.mean(axis=0).astype(np.float32),
               std=np.where(std > 0, std, 1.0).astype(np.float32))

  def __call__(self, x: Any) -> Any:
    """x [..., D] (NumPy or JAX) standardised with the stored statistics."""
    return (x - self.mean) / self.std

  def to_dict(self) -> dict[str, np.ndarray]:
    return {"mean": np.asarray(self.mean), "std": np.asarray(self.std)}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Standardizer:
    return cls(mean=np.asarray(d["mean"], np.float32), std=np.asarray(d["std"], np.float32))


# A head whose training loss fell by less than this share of its initial value barely moved:
# its probe measures the optimiser more than the features (docs/evaluation.md).
BARELY_TRAINED_DROP = 0.05


@dataclasses.dataclass
class TrainedHead:
  """A trained head and how it got there.

  Attributes:
    config: the HeadConfig.
    params: the head's params at the best validation epoch (host NumPy).
    best_epoch: 1-based epoch of the lowest validation loss.
    best_val_loss: that loss.
    epochs_run: epochs actually trained.
    stopped_early: True if patience ran out before max_epochs.
    history: one {'epoch', 'train_loss', 'val_loss'} per epoch.
    initial_train_loss: loss of the untrained head on the first epoch's training rows.
    standardizer: feature statistics applied before the head (None: raw features).
  """
  config: HeadConfig
  params: Any
  best_epoch: int
  best_val_loss: float
  epochs_run: int
  stopped_early: bool
  history: list[dict[str, float]]
  initial_train_loss: float = math.nan
  standardizer: Standardizer | None = None

  def predict(self, x: np.ndarray) -> np.ndarray:
    """Head outputs [n, K] for raw features x [n, D] (standardised first if fitted so)."""
    if self.standardizer is not None:
      x = self.standardizer(np.asarray(x, np.float32))
    return predict(self.config, self.params, x)

  def convergence(self) -> dict[str, Any]:
    """Whether the head trained: training loss before training and at the last epoch, the
    drop (absolute and relative to the initial loss), best and run epochs, and
    `barely_trained` (relative drop < BARELY_TRAINED_DROP)."""
    final = self.history[-1]["train_loss"] if self.history else math.nan
    drop = self.initial_train_loss - final
    relative = drop / self.initial_train_loss if self.initial_train_loss > 0 else math.nan
    return {"train_loss_initial": self.initial_train_loss, "train_loss_final": final,
            "train_loss_drop": drop, "relative_drop": relative,
            "best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
            "barely_trained": not relative >= BARELY_TRAINED_DROP}


def per_example_loss(kind: str, outputs: jax.Array, targets: jax.Array) -> jax.Array:
  """Loss of each row. outputs, targets: [B, K] float32 -> [B] float32.

  multilabel: mean over classes of BCE with logits; multiclass: softmax cross-entropy with the
  (one-hot) targets as probabilities; regression: mean squared error over outputs.
  """
  outputs = outputs.astype(jnp.float32)
  targets = targets.astype(jnp.float32)
  if kind == metrics.MULTILABEL:
    return optax.sigmoid_binary_cross_entropy(outputs, targets).mean(axis=-1)
  if kind == metrics.MULTICLASS:
    return optax.softmax_cross_entropy(outputs, targets)
  if kind == metrics.REGRESSION:
    return jnp.square(outputs - targets).mean(axis=-1)
  raise ValueError(f"unknown task kind {kind!r}")


def make_optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
  """PyTorch `Adam(lr, weight_decay)`: L2 added to the gradient before Adam (coupled)."""
  return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))


def init_params(config: HeadConfig, dim: int) -> Any:
  """Head params for D = `dim` input features."""
  return config.module().init(jax.random.key(config.seed), jnp.zeros((1, dim)))["params"]


def make_predict_fn(config: HeadConfig) -> Callable[[Any, jax.Array], jax.Array]:
  """Jitted `fn(params, x [n, D]) -> [n, K]` in inference mode (no dropout)."""
  module = config.module()
  return jax.jit(lambda params, x: module.apply({"params": params}, x, train=False))


def predict(config: HeadConfig, params: Any, x: np.ndarray) -> np.ndarray:
  """Head outputs [n, K] (logits or regression values) for features x [n, D], as NumPy."""
  return np.asarray(make_predict_fn(config)(params, jnp.asarray(x, jnp.float32)))


def mean_loss(config: HeadConfig, outputs: np.ndarray, targets: np.ndarray) -> float:
  """Dataset-level loss of outputs [n, K] against targets [n, K]."""
  return float(jnp.mean(per_example_loss(config.kind, jnp.asarray(outputs),
                                         jnp.asarray(targets))))


def _epoch_plan(rows: np.ndarray, batch_size: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
  """A random permutation of `rows` as [S, b] indices and a [S, b] validity mask."""
  n = len(rows)
  steps = max(1, math.ceil(n / batch_size))
  order = np.zeros(steps * batch_size, np.int32)
  order[:n] = rows[rng.permutation(n)]
  mask = np.zeros(steps * batch_size, bool)
  mask[:n] = True
  return order.reshape(steps, batch_size), mask.reshape(steps, batch_size)


def make_epoch_fn(config: HeadConfig, tx: optax.GradientTransformation):
  """Jitted `fn(params, opt_state, feats [N,D], targets [N,K], idx [S,b], mask [S,b], key)`.

  Returns (params, opt_state, mean training loss over the epoch's real rows).
  """
  module = config.module()

  def epoch(params, opt_state, feats, targets, idx, mask, key):
    def step(carry, batch):
      params, opt_state, total, count = carry
      rows, valid, step_key = batch
      x, y = feats[rows], targets[rows]
      weight = valid.astype(jnp.float32)
      n = jnp.sum(weight)

      def loss_fn(p):
        out = module.apply({"params": p}, x, train=True, rngs={"dropout": step_key})
        return jnp.sum(per_example_loss(config.kind, out, y) * weight) / jnp.maximum(n, 1.0)

      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      return (params, opt_state, total + loss * n, count + n), None

    keys = jax.random.split(key, idx.shape[0])
    (params, opt_state, total, count), _ = jax.lax.scan(
        step, (params, opt_state, jnp.zeros(()), jnp.zeros(())), (idx, mask, keys))
    return params, opt_state, total / jnp.maximum(count, 1.0)

  return jax.jit(epoch)


def train_head(config: HeadConfig, sampler: EpochSampler, val_x: np.ndarray,
               val_y: np.ndarray, *,
               on_epoch: Callable[[dict[str, float]], None] | None = None,
               standardizer: Standardizer | None = None) -> TrainedHead:
  """Trains a head with early stopping on the validation loss; returns the best one.

  Args:
    config: head and training settings.
    sampler: gives each epoch's training rows (see `EpochSampler`), raw features.
    val_x: [n_val, D] validation representations (chunk means), raw.
    val_y: [n_val, K] validation targets.
    on_epoch: called after each epoch with {'epoch', 'train_loss', 'val_loss'}.
    standardizer: if given, applied to training and validation features; kept with the head.

  Returns:
    TrainedHead with the params of the lowest-validation-loss epoch.
  """
  if config.max_epochs < 1 or config.patience < 1 or config.batch_size < 1:
    raise ValueError("probe max_epochs, patience and batch_size must all be >= 1, got "
                     f"{config.max_epochs}, {config.patience}, {config.batch_size}.")
  if len(val_x) == 0:
    raise ValueError("the validation split is empty; early stopping needs validation tracks.")
  if standardizer is not None:
    val_x = standardizer(np.asarray(val_x, np.float32))
  rng = np.random.default_rng(config.seed)
  tx = make_optimizer(config.learning_rate, config.weight_decay)
  params = init_params(config, val_x.shape[1])
  opt_state = tx.init(params)
  epoch_fn = make_epoch_fn(config, tx)
  predict_fn = make_predict_fn(config)
  val_x_dev, val_y_dev = jnp.asarray(val_x, jnp.float32), jnp.asarray(val_y, jnp.float32)
  val_loss_fn = jax.jit(lambda p: jnp.mean(per_example_loss(
      config.kind, predict_fn(p, val_x_dev), val_y_dev)))
  key = jax.random.fold_in(jax.random.key(config.seed), 1)

  best = (math.inf, 0, jax.device_get(params))
  history: list[dict[str, float]] = []
  waited = 0
  epoch = 0
  initial_train_loss = math.nan
  for epoch in range(1, config.max_epochs + 1):
    feats, targets, rows = sampler(epoch, rng)
    feats, targets = jnp.asarray(feats, jnp.float32), jnp.asarray(targets, jnp.float32)
    if standardizer is not None:
      feats = standardizer(feats)
    idx, mask = _epoch_plan(np.asarray(rows), config.batch_size, rng)
    if epoch == 1:
      first = jnp.asarray(rows)
      initial_train_loss = mean_loss(config, predict_fn(params, feats[first]), targets[first])
    params, opt_state, train_loss = epoch_fn(params, opt_state, feats, targets, idx, mask,
                                             jax.random.fold_in(key, epoch))
    val_loss = float(val_loss_fn(params))
    record = {"epoch": epoch, "train_loss": float(train_loss), "val_loss": val_loss}
    history.append(record)
    if on_epoch is not None:
      on_epoch(record)
    if not math.isfinite(val_loss):
      raise FloatingPointError(f"non-finite validation loss {val_loss} at probe epoch {epoch}.")
    if val_loss < best[0]:
      best = (val_loss, epoch, jax.device_get(params))
      waited = 0
    else:
      waited += 1
      if waited >= config.patience:
        break
  return TrainedHead(config=config, params=best[2], best_epoch=best[1], best_val_loss=best[0],
                     epochs_run=epoch, stopped_early=epoch < config.max_epochs,
                     history=history, initial_train_loss=initial_train_loss,
                     standardizer=standardizer)


def array_sampler(x: np.ndarray, y: np.ndarray) -> EpochSampler:
  """Sampler for fixed features: every epoch uses all rows of x [n, D], y [n, K]."""
  rows = np.arange(len(x))
  x_dev, y_dev = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  return lambda epoch, rng: (x_dev, y_dev, rows)


def cached_crop_sampler(chunk_x: np.ndarray, chunk_owner: np.ndarray,
                        clip_targets: np.ndarray) -> EpochSampler:
  """Sampler that stands each clip for one of its cached chunk representations, drawn anew
  every epoch (the cached analogue of the original's one random crop per clip per epoch).

  Args:
    chunk_x: [R, D] representations of every cached chunk.
    chunk_owner: [R] int clip index of each chunk, chunks of a clip contiguous, clips in order
      0..n-1 (as `features.embed_split` returns them).
    clip_targets: [n, K] targets per clip.
  """
  chunk_owner = np.asarray(chunk_owner)
  n = len(clip_targets)
  counts = np.bincount(chunk_owner, minlength=n)
  if (counts == 0).any():
    raise ValueError(f"{int((counts == 0).sum())} training clips have no cached chunk.")
  if np.any(np.diff(chunk_owner) < 0):
    raise ValueError("chunk_owner must be sorted (chunks of a clip contiguous).")
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  x_dev = jnp.asarray(chunk_x, jnp.float32)
  y_dev = jnp.asarray(np.asarray(clip_targets, np.float32)[chunk_owner])

  def sample(epoch: int, rng: np.random.Generator):
    del epoch
    return x_dev, y_dev, starts + rng.integers(0, counts)

  return sample
