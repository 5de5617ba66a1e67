"""Which probe protocol measures the features: pretrained vs random init on the synthetic tasks.

  python bench/probe_protocol.py --pretrained=workdirs/demo --out=/tmp/probe_protocol

Probes the demo's label sets (configs/demo.py: linear heads) for five encoder/protocol
variants and prints one table of headline test metrics plus each head's relative training-loss
drop:
  pretrained (std)         the trained encoder, standardised features (the demo's protocol);
  pretrained (raw)         the trained encoder, raw features;
  random recal (std)       the same architecture at init, BatchNorm statistics recalibrated on
                           8 batches of training audio, standardised features (the demo's
                           reference);
  random (std)             at init, init-time BatchNorm statistics, standardised features;
  random (raw)             at init, init-time BatchNorm statistics, raw features (an init
                           export probed like any encoder).
Also prints the between-clip spread of the test embeddings (`spread`: median distance between
two clips' chunk-mean embeddings relative to their mean norm). Not a test: a few minutes on 2
CPU cores.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from configs import demo  # noqa: E402
from ssc_jax.evaluation import probe  # noqa: E402
from ssc_jax.evaluation import reports  # noqa: E402

VARIANTS = {  # name -> (random_init, recalibration batches, standardize)
    "pretrained (std)": (False, 0, True),
    "pretrained (raw)": (False, 0, False),
    "random recal (std)": (True, 8, True),
    "random (std)": (True, 0, True),
    "random (raw)": (True, 0, False),
}


def spread(h: np.ndarray) -> float:
  """Median over pairs of clips of |h_i - h_j| / mean |h| (0: all clips alike)."""
  h = np.asarray(h, np.float64)
  d = np.linalg.norm(h[:, None] - h[None], axis=-1)[~np.eye(len(h), dtype=bool)]
  return float(np.median(d) / np.linalg.norm(h, axis=-1).mean())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pretrained", required=True, help="pretraining workdir or msgpack")
  parser.add_argument("--out", required=True, help="directory for the probe workdirs")
  parser.add_argument("--data-dir", default="", help="TFDS data dir ('' = the default)")
  parser.add_argument("--learning-rate", type=float, default=0.0,
                      help="head learning rate (0 = the demo's)")
  parser.add_argument("--variants", default=",".join(VARIANTS),
                      help="comma-separated subset of the variants")
  args = parser.parse_args()
  variants = {v: VARIANTS[v] for v in args.variants.split(",")}
  probes = demo.get_config().evaluate.probes
  memo = probe.Memo()
  rows, spreads = [], {}
  start = time.perf_counter()
  for variant, (random_init, batches, standardize) in variants.items():
    row = [variant]
    for name in probes:
      c = probes[name]
      c = type(c)(c.to_dict())
      c.pretrained, c.data.data_dir, c.name = args.pretrained, args.data_dir, variant
      c.random_init, c.probe.standardize = random_init, standardize
      c.probe.recalibrate_batchnorm_batches = batches
      c.report.projection = "none"
      c.probe.learning_rate = args.learning_rate or c.probe.learning_rate
      workdir = (pathlib.Path(args.out) / f"lr{c.probe.learning_rate:g}"
                 / variant.replace(" ", "_") / name)
      r = probe.run(c, str(workdir), memo=memo, print_report=False)
      metric = reports.HEADLINE[r["kind"]][0]
      drop = r["training"]["convergence"]["relative_drop"]
      row.append(f"{r['test'][metric]:.3f} ({100 * drop:.0f}%)")
      spreads[variant] = spread(np.load(workdir / "predictions.npz")["embeddings"])
    rows.append(row + [f"{spreads[variant]:.1e}"])
  header = (["encoder (features)"]
            + [f"{n} {reports.HEADLINE['multilabel' if n == 'pitch_classes' else 'multiclass'][0]}"
               f" (loss drop)" for n in probes] + ["embedding spread"])
  print(reports.markdown_table(header, rows))
  print(f"\nhead lr {args.learning_rate or 'as configured'}; "
        f"{time.perf_counter() - start:.0f} s on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
  main()
