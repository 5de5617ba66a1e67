"""PNG figures of an evaluation: embedding map, confusion matrix, robustness and loss curves.

Matplotlib with the non-interactive Agg backend; every function writes one file and returns
its path.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  # pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402
from sklearn import decomposition  # noqa: E402
from sklearn import manifold  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from ssc_jax import paths  # noqa: E402
from ssc_jax.evaluation import metrics  # noqa: E402

_MAX_LEGEND = 20


def project_2d(x: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
  """[n, D] -> [n, 2] with t-SNE (PCA-initialised) or PCA; t-SNE falls back to PCA below 8
  points (its perplexity must stay below n)."""
  x = np.asarray(x, np.float64)
  if len(x) < 3:
    return np.pad(x[:, :2], ((0, 0), (0, max(0, 2 - x.shape[1]))))
  if method == "tsne" and len(x) >= 8:
    perplexity = float(min(30.0, (len(x) - 1) / 3))
    return manifold.TSNE(n_components=2, perplexity=perplexity, init="pca",
                         random_state=seed).fit_transform(x)
  if method not in ("tsne", "pca"):
    raise ValueError(f"config.report.projection must be 'tsne', 'pca' or 'none', got {method!r}.")
  return decomposition.PCA(n_components=2, random_state=seed).fit_transform(x)


def _colour_labels(labels: np.ndarray, kind: str, names: Sequence[str]
                   ) -> tuple[np.ndarray, list[str] | None]:
  """A class id per point (multi-label: its most frequent positive tag) or a real value."""
  if kind == metrics.REGRESSION:
    return labels[:, 0], None
  labels = np.asarray(labels) > 0.5
  if kind == metrics.MULTICLASS:
    return np.argmax(labels, 1), list(names)
  freq = labels.sum(0)
  ranked = np.where(labels, freq[None], -1)
  ids = np.where(labels.any(1), np.argmax(ranked, 1), len(names))
  return ids, list(names) + ["(none)"]


def embedding_map(x: np.ndarray, labels: np.ndarray, kind: str, names: Sequence[str],
                  path: str, *, method: str = "tsne", max_points: int = 2000, seed: int = 0,
                  title: str = "") -> str:
  """Scatter of a 2-D projection of track embeddings coloured by label.

  Args:
    x: [n, D] embeddings; labels: [n, K] targets.
    kind: task kind; names: K class names.
    path: output PNG.
    method: "tsne" or "pca".
    max_points: random subsample above this many tracks.
    seed: subsample and t-SNE seed.
    title: figure title.
  """
  rng = np.random.default_rng(seed)
  if len(x) > max_points:
    keep = np.sort(rng.choice(len(x), max_points, replace=False))
    x, labels = x[keep], labels[keep]
  xy = project_2d(x, method, seed)
  colour, legend = _colour_labels(labels, kind, names)
  fig, ax = plt.subplots(figsize=(7, 6))
  if legend is None:
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=colour, s=8, cmap="viridis")
    fig.colorbar(sc, ax=ax, label=names[0] if names else "target")
  else:
    cmap = plt.get_cmap("tab20", max(len(legend), 1))
    for c in np.unique(colour):
      sel = colour == c
      ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=cmap(int(c) % cmap.N),
                 label=legend[int(c)] if len(np.unique(colour)) <= _MAX_LEGEND else None)
    if len(np.unique(colour)) <= _MAX_LEGEND:
      ax.legend(fontsize=7, markerscale=2, loc="best")
  ax.set_title(title or f"Test embeddings ({method.upper()})")
  ax.set_xticks([])
  ax.set_yticks([])
  fig.tight_layout()
  _save(fig, path)
  return path


def confusion_matrix(scores: np.ndarray, targets: np.ndarray, names: Sequence[str], path: str,
                     title: str = "") -> str:
  """Row-normalised confusion matrix of argmax predictions (multi-class tasks)."""
  k = len(names)
  cm = skm.confusion_matrix(np.argmax(targets, 1), np.argmax(scores, 1), labels=np.arange(k))
  rows = cm.sum(1, keepdims=True)
  norm = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
  size = min(14.0, 3 + 0.35 * k)
  fig, ax = plt.subplots(figsize=(size, size))
  im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
  fig.colorbar(im, ax=ax, fraction=0.046)
  if k <= 40:
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title or "Confusion matrix (row-normalised)")
  fig.tight_layout()
  _save(fig, path)
  return path


def robustness_curve(rows: Sequence[dict[str, Any]], metric_names: Sequence[str], path: str,
                     title: str = "") -> str:
  """Metric(s) against the corruption level; rows: {'name', metric: value, ...} in order."""
  fig, ax = plt.subplots(figsize=(8, 4.5))
  xs = np.arange(len(rows))
  for m in metric_names:
    ax.plot(xs, [r.get(m, np.nan) for r in rows], marker="o", label=m)
  ax.set_xticks(xs, [r["name"] for r in rows], rotation=45, ha="right")
  ax.set_xlabel("corruption level")
  ax.set_ylabel("test metric")
  ax.grid(alpha=0.3)
  ax.legend()
  ax.set_title(title or "Robustness to corruptions")
  fig.tight_layout()
  _save(fig, path)
  return path


def loss_curves(history: Sequence[dict[str, float]], path: str, best_epoch: int = 0,
                title: str = "") -> str:
  """Training and validation loss per epoch, with the restored epoch marked."""
  fig, ax = plt.subplots(figsize=(6, 4))
  epochs = [r["epoch"] for r in history]
  ax.plot(epochs, [r["train_loss"] for r in history], label="train")
  ax.plot(epochs, [r["val_loss"] for r in history], label="validation")
  if best_epoch:
    ax.axvline(best_epoch, color="grey", ls="--", label=f"best (epoch {best_epoch})")
  ax.set_xlabel("epoch")
  ax.set_ylabel("loss")
  ax.legend()
  ax.set_title(title or "Probe training")
  fig.tight_layout()
  _save(fig, path)
  return path


def _save(fig: Any, path: str) -> None:
  """Writes `fig` as a PNG to `path` (local or `gs://`) and closes it."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=110)
  plt.close(fig)
  paths.write_atomic(path, buffer.getvalue())


def read_png(path: str) -> np.ndarray:
  """A PNG as uint8 [H, W, 3] (for TensorBoard image summaries)."""
  img = plt.imread(io.BytesIO(paths.resolve(path).read_bytes()), format="png")
  if img.dtype != np.uint8:
    img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
  return img[..., :3]
