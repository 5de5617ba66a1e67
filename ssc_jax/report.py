"""Command line: one comparison table from several probe workdirs.

  python -m ssc_jax.report workdirs/probe_ssl_* workdirs/probe_semisup_* [--out=compare.md]

Reads each workdir's results.json (written by `configs/probe.py` runs, and by the supervised
baseline `configs/supervised.py`, scored the same way) and prints a markdown table with one row
per encoder (config.name, default the pretraining folder's name) and one column per task and
headline metric (ROC-AUC/PR-AUC, accuracy, weighted key score, R²), plus
one robustness table per task that has a sweep. `--out=FILE.md` also writes the tables there
and each as CSV beside it (FILE.<table>.csv).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ssc_jax import paths
from ssc_jax.evaluation import reports


def render(workdirs: list[str]) -> tuple[str, dict[str, tuple[list, list]]]:
  """Markdown of the comparison tables of `workdirs`, and the tables themselves."""
  tables = reports.gather(workdirs)
  parts = [f"# Probe comparison ({len(workdirs)} runs)", ""]
  for name, (header, rows) in tables.items():
    title = "Test metrics" if name == "main" else f"Robustness: {name.split('/', 1)[1]}"
    parts += [f"## {title}", "", reports.markdown_table(header, rows), ""]
  return "\n".join(parts), tables


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI on `argv` (default sys.argv[1:]); returns the exit status."""
  parser = argparse.ArgumentParser(prog="python -m ssc_jax.report",
                                   description="Compare several probe workdirs.")
  parser.add_argument("workdirs", nargs="+", help="probe workdirs (with results.json)")
  parser.add_argument("--out", help="also write the markdown here (CSV files beside it)")
  args = parser.parse_args(argv)
  try:
    text, tables = render(args.workdirs)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(text)
  if args.out:
    out = paths.resolve(args.out)
    paths.write_atomic(out, text + "\n")
    for name, (header, rows) in tables.items():
      paths.write_atomic(out.parent / f"{out.stem}.{name.replace('/', '_')}.csv",
                         reports.csv_text(header, rows))
    print(f"Wrote {args.out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
