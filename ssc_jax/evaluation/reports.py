"""Markdown and CSV reports of evaluation runs, and the comparison of several runs.

A probe workdir holds:
  results.json     everything the run measured (read back by `gather`);
  results.md       a readable summary (tables and links to the figures);
  results.csv      metric,value rows of the test metrics;
  robustness.csv   level,name,<metrics> (when the sweep ran);
  prototypes.csv   fraction,num_clips,<metrics> (when prototypes ran).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from ssc_jax import paths
from ssc_jax.evaluation import metrics

RESULTS_JSON = "results.json"
# Columns shown per task kind in tables (first = the task's headline metric).
HEADLINE = {
    metrics.MULTILABEL: ("roc_auc", "pr_auc"),
    metrics.MULTICLASS: ("accuracy", "weighted_key_score"),
    metrics.REGRESSION: ("r2", "r2_arousal", "r2_valence"),
}


def fmt(value: Any) -> str:
  """Numbers with 4 decimals, NaN as 'n/a', everything else as str."""
  if isinstance(value, bool) or value is None:
    return str(value)
  if isinstance(value, int):
    return str(value)
  if isinstance(value, float):
    return "n/a" if math.isnan(value) else f"{value:.4f}"
  return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub markdown table."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(header)
  for row in rows:
    writer.writerow([("" if isinstance(v, float) and math.isnan(v) else v) for v in row])
  return buf.getvalue()


def write_json(path: paths.PathLike, obj: Any) -> None:
  paths.write_atomic(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def json_default(x: Any) -> Any:
  """json.dumps `default=` for NumPy arrays and scalars."""
  if hasattr(x, "tolist"):
    return x.tolist()
  if hasattr(x, "item"):
    return x.item()
  raise TypeError(f"not JSON serialisable: {type(x)}")


def metric_rows(result: dict[str, Any]) -> list[tuple[str, float]]:
  """(name, value) of the scalar metrics of one metrics dict."""
  return list(metrics.scalar_metrics(result).items())


def _level_table(rows: Sequence[dict[str, Any]], first: Sequence[str]) -> tuple[list, list]:
  extra = [k for k in rows[0] if k not in first and isinstance(rows[0][k], (int, float))]
  header = list(first) + extra
  return header, [[r.get(k, float("nan")) for k in header] for r in rows]


def _convergence_lines(results: dict[str, Any]) -> list[str]:
  """Whether the head trained, and on which features (results of older runs may lack it)."""
  c = results["training"].get("convergence")
  if not c:
    return []
  enc = results["encoder"]
  features = "standardised" if results["head"].get("standardized") else "raw"
  if enc.get("random_init"):
    features += " (random-init encoder"
    batches = enc.get("batchnorm_recalibration_batches", 0)
    features += f", BatchNorm recalibrated on {batches} batches)" if batches else ")"
  line = (f"* head training on {features} features: training loss {fmt(c['train_loss_initial'])}"
          f" before training, {fmt(c['train_loss_final'])} at the last epoch (drop "
          f"{fmt(c['train_loss_drop'])}, {100 * c['relative_drop']:.1f}%)")
  if c["barely_trained"]:
    line += ("; **the head barely trained: this probe measures the optimiser more than the "
             "features** (see docs/evaluation.md)")
  return [line]


def write_probe_report(workdir: paths.PathLike, results: dict[str, Any]) -> str:
  """Writes results.json/.md/.csv (+ robustness.csv, prototypes.csv); returns the markdown."""
  workdir = paths.resolve(workdir)
  write_json(workdir / RESULTS_JSON, results)
  test = metric_rows(results["test"])
  paths.write_atomic(workdir / "results.csv", csv_text(["metric", "value"], test))
  t = results["training"]
  title = "Supervised baseline" if results["protocol"] == "supervised" else "Probe"
  lines = [
      f"# {title}: {results['task']} ({results['dataset']}, label `{results['label_key']}`)", "",
      f"* encoder: `{results['encoder']['source']}` (name `{results['name']}`)",
      f"* task kind: {results['kind']}, K = {results['num_classes']}; tracks: "
      + ", ".join(f"{k} {v}" for k, v in results["num_tracks"].items()),
      f"* protocol: {results['protocol']}; head: {results['head']['description']}; "
      f"train features: {t['features']}",
      f"* learning rate {t['learning_rate']:g}; best epoch {t['best_epoch']} of "
      f"{t['epochs_run']} (early stopping {'stopped' if t['stopped_early'] else 'not triggered'}"
      f"); best validation loss {t['best_val_loss']:.4f}",
      *_convergence_lines(results),
      f"* test: every track once, chunk-mean of the first {results['max_chunks']} chunks of "
      f"{results['view_length']} samples", "",
      "## Test metrics", "", markdown_table(["metric", "value"], test), ""]
  if results.get("unscored_classes"):
    lines += [f"Classes without positives (or negatives) in test, left out of the macro "
              f"averages: {', '.join(results['unscored_classes'])}", ""]
  if t.get("lr_search"):
    rows = [[r["learning_rate"], r["val_metric"], r["best_val_loss"], r["best_epoch"]]
            for r in t["lr_search"]]
    lines += ["## Learning-rate selection (validation)", "",
              markdown_table(["learning rate", t["val_metric_name"], "best val loss",
                              "best epoch"], rows), ""]
  if results.get("robustness"):
    header, rows = _level_table(results["robustness"], ["level", "name"])
    paths.write_atomic(workdir / "robustness.csv", csv_text(header, rows))
    lines += ["## Robustness (test metrics under corruption)", "",
              markdown_table(header, rows), ""]
  if results.get("prototypes"):
    header, rows = _level_table(results["prototypes"], ["fraction", "num_clips"])
    paths.write_atomic(workdir / "prototypes.csv", csv_text(header, rows))
    lines += ["## Prototype evaluation (projection-space class means)", "",
              markdown_table(header, rows), ""]
  if results.get("figures"):
    lines += ["## Figures", ""] + [f"![{name}]({paths.resolve(p).name})"
                                    for name, p in results["figures"].items()] + [""]
  text = "\n".join(lines)
  paths.write_atomic(workdir / "results.md", text)
  return text


def load_results(workdir: paths.PathLike) -> dict[str, Any]:
  """Reads `<workdir>/results.json`; a clear error when the run has not finished."""
  path = paths.resolve(workdir) / RESULTS_JSON
  if not path.is_file():
    raise FileNotFoundError(f"{workdir}: no {RESULTS_JSON}; is it a finished probe workdir?")
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e}).") from e


def headline_columns(results: dict[str, Any]) -> list[str]:
  """The headline metric names present in a run's test metrics."""
  return [m for m in HEADLINE.get(results["kind"], ()) if m in results["test"]]


def gather(workdirs: Sequence[str]) -> dict[str, tuple[list[str], list[list[Any]]]]:
  """Comparison tables of several probe runs.

  Returns:
    {'main': (header, rows)}: one row per encoder name, one column per task/metric;
    plus {'robustness/<task>': (header, rows)} with one row per encoder and one column per
    corruption level (the task's headline metric), for the runs that have a sweep.
  """
  runs = [load_results(w) for w in workdirs]
  columns: list[tuple[str, str]] = []
  table: dict[str, dict[tuple[str, str], Any]] = {}
  for r in runs:
    for m in headline_columns(r):
      if (r["task"], m) not in columns:
        columns.append((r["task"], m))
      table.setdefault(r["name"], {})[(r["task"], m)] = r["test"][m]
  header = ["encoder"] + [f"{t}/{m}" for t, m in columns]
  out = {"main": (header, [[name] + [row.get(c, float("nan")) for c in columns]
                           for name, row in table.items()])}
  for r in runs:
    if not r.get("robustness"):
      continue
    metric = headline_columns(r)[0]
    key = f"robustness/{r['task']}/{metric}"
    names = [lvl["name"] for lvl in r["robustness"]]
    header_r, rows_r = out.setdefault(key, (["encoder"] + names, []))
    values = {lvl["name"]: lvl.get(metric, float("nan")) for lvl in r["robustness"]}
    rows_r.append([r["name"]] + [values.get(n, float("nan")) for n in header_r[1:]])
  return out
