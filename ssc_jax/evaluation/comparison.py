"""After pretraining: the trained encoder against a random-init reference, one probe per label set.

`run(config, workdir)` is called by `ssc_jax.main` when `config.evaluate.probe` is set (the
demo). For every entry of `config.evaluate.probes` (a configs/probe.py config) it runs
`probe.run` twice with the same protocol: on the trained encoder (`workdir`), and on the same
architecture at a random initialisation whose BatchNorm running statistics are recalibrated on
the probe's training audio (`evaluate.reference_recalibrate_batchnorm_batches`) and whose
features are standardised, since an init-time encoder in inference mode is degenerate
(docs/evaluation.md). Reports go to `<workdir>/probes/<label set>/{pretrained,random_init}`;
the table of headline test metrics is printed and written to `<workdir>/probe_results.md`.
"""

from __future__ import annotations

import dataclasses

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections

from configs import probe as probe_configs
from ssc_jax import paths
from ssc_jax.evaluation import head_training
from ssc_jax.evaluation import probe
from ssc_jax.evaluation import reports

RESULTS_FILE = "probe_results.md"
ENCODERS = ("random_init", "pretrained")


@dataclasses.dataclass(frozen=True)
class Row:
  """One label set: its headline metric for both encoders, and whether each head trained."""
  label_set: str
  metric: str
  random_init: float
  pretrained: float
  barely_trained: tuple[str, ...]  # The encoders whose head barely trained.


def probe_config(config: ml_collections.ConfigDict, name: str, workdir: paths.PathLike,
                 encoder: str) -> ml_collections.ConfigDict:
  """`config.evaluate.probes[name]` completed for `encoder` ("pretrained" or "random_init")."""
  c = ml_collections.ConfigDict(config.evaluate.probes[name].to_dict())
  c.pretrained = str(workdir)
  c.data.data_dir = c.data.data_dir or config.data.data_dir
  c.name = encoder
  if encoder == "random_init":
    probe_configs.as_random_init_reference(
        c, batches=config.evaluate.reference_recalibrate_batchnorm_batches)
  return c


def run(config: ml_collections.ConfigDict, workdir: paths.PathLike) -> list[Row]:
  """Probes every label set for both encoders; prints and writes the comparison table."""
  workdir = paths.resolve(workdir)
  if jax.process_count() > 1:  # Process 0 wrote the export.
    multihost_utils.sync_global_devices("ssc_jax export written")
  memo = probe.Memo()
  rows, sizes = [], None
  for name in config.evaluate.probes:
    results = {}
    for encoder in ENCODERS:
      results[encoder] = probe.run(probe_config(config, name, workdir, encoder),
                                   workdir / "probes" / name / encoder, memo=memo,
                                   print_report=False)
    metric = reports.HEADLINE[results["pretrained"]["kind"]][0]
    rows.append(Row(label_set=name, metric=metric,
                    random_init=results["random_init"]["test"][metric],
                    pretrained=results["pretrained"]["test"][metric],
                    barely_trained=tuple(e for e in ENCODERS if results[e]["training"]
                                         ["convergence"]["barely_trained"])))
    sizes = sizes or (results["pretrained"]["dataset"], results["pretrained"]["num_tracks"])
  if not rows:
    return rows
  dataset, tracks = sizes
  lines = [f"Linear probes on frozen embeddings ({dataset}: "
           + " / ".join(f"{n} {split}" for split, n in tracks.items()) + " tracks; "
           "standardised features; random init = same architecture, BatchNorm statistics "
           "recalibrated on training audio)", "",
           reports.markdown_table(["label set", "metric", "random init", "pretrained"],
                                  [[r.label_set, r.metric, r.random_init, r.pretrained]
                                   for r in rows])]
  flagged = [f"{r.label_set}/{e}" for r in rows for e in r.barely_trained]
  if flagged:
    lines += ["", "Heads that barely trained (training loss fell < "
              f"{100 * head_training.BARELY_TRAINED_DROP:g}%): {', '.join(flagged)}"]
  lines += ["", f"Full reports: {workdir / 'probes'}/<label set>/<encoder>/results.md"]
  table = "\n".join(lines)
  if jax.process_index() == 0:
    paths.write_atomic(workdir / RESULTS_FILE, table + "\n")
  print(table, flush=True)
  logging.info("Probe comparison written to %s.", workdir / RESULTS_FILE)
  return rows
