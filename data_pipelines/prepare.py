"""Prepares one real dataset from the user's manual download.

  python -m data_pipelines.prepare --dataset=mtat/top50 --manual_dir=/data/mtat \
      [--data_dir=~/ssc_jax_data] [--min_samples=59535] [--num_workers=8]
  python -m data_pipelines.prepare --list
(`ssc-prepare` is the same command, installed as a console script.)

Decodes every listed file (mono, 22050 Hz, int16), writes the TFDS dataset into data_dir and
a skip report `skipped-<split>.tsv` next to it, then prints how many files each split kept
and skipped. A second run finds the prepared dataset and only prints the summary; a second
run with another --min_samples is refused. Exit status: 0 done, 2 bad arguments, manual_dir
layout/annotations (the message lists the expected files) or a min_samples mismatch.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from data_pipelines import decode


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m data_pipelines.prepare", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", help="TFDS 'name/config', e.g. mtat/top50 (see --list).")
  parser.add_argument("--manual_dir", help="Folder holding the manual download.")
  parser.add_argument("--data_dir", default="",
                      help="TFDS data dir (default $TFDS_DATA_DIR or ~/ssc_jax_data).")
  parser.add_argument("--min_samples", type=int, default=None,
                      help="Skip files shorter than this many samples at 22050 Hz (default "
                      f"{decode.DEFAULT_MIN_SAMPLES}). A prepared dataset keeps the value it was "
                      "prepared with; asking for another one is an error.")
  parser.add_argument("--num_workers", type=int, default=0,
                      help="Decoding threads (0 = min(8, cpu count)).")
  parser.add_argument("--list", action="store_true", help="List datasets, configs, layouts.")
  return parser.parse_args(argv)


def list_datasets() -> str:
  """One block per dataset: TFDS name, configs and expected manual_dir layout."""
  from data_pipelines import builders  # pylint: disable=g-import-not-at-top
  blocks = []
  for name, cls in sorted(builders.BUILDERS.items()):
    configs = [c.name for c in (cls.BUILDER_CONFIGS or [])]
    title = name + (f"/{{{','.join(configs)}}}" if configs else "")
    layout = "\n".join("    " + line for line in cls.MANUAL_DOWNLOAD_INSTRUCTIONS.splitlines())
    blocks.append(f"{title}\n{layout}")
  return "\n\n".join(blocks)


def summarize(builder) -> str:
  """'split: kept N, skipped M' lines plus where the skip reports are."""
  from data_pipelines.builders import base  # pylint: disable=g-import-not-at-top
  data_path = pathlib.Path(os.fspath(builder.data_path))
  lines = [f"{builder.info.full_name} at {data_path} "
           f"(min_samples={builder.info.metadata['min_samples']})"]
  for split in sorted(builder.info.splits.keys()):
    report = data_path / base.SKIP_REPORT_PATTERN.format(split=split)
    skipped = base.read_skip_report(report)
    lines.append(f"  {split:<11} kept {builder.info.splits[split].num_examples:>7}, "
                 f"skipped {len(skipped):>5}" + (f"  (see {report.name})" if skipped else ""))
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  args = _parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from data_pipelines import builders  # pylint: disable=g-import-not-at-top
  from data_pipelines import datasets  # pylint: disable=g-import-not-at-top
  from data_pipelines.builders import base  # pylint: disable=g-import-not-at-top

  if args.list:
    print(list_datasets())
    return 0
  if not args.dataset:
    print("error: --dataset is required (see --list).", file=sys.stderr)
    return 2
  name = args.dataset.split(":")[0].split("/")[0]
  if name not in builders.BUILDERS:
    print(f"error: unknown dataset {name!r}; known: {', '.join(sorted(builders.BUILDERS))}",
          file=sys.stderr)
    return 2
  cls = builders.BUILDERS[name]
  data_dir = datasets.resolve_data_dir(args.data_dir)
  try:
    builder = tfds.builder(args.dataset, data_dir=data_dir, min_samples=args.min_samples,
                           num_workers=args.num_workers or None)
  except (ValueError, tfds.core.DatasetNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if builder.is_prepared():
    print(f"Already prepared; reusing it (delete {builder.data_path} to rebuild).")
    print(summarize(builder))
    return 0
  manual_dir = pathlib.Path(os.path.expanduser(args.manual_dir or ""))
  if not args.manual_dir or not manual_dir.is_dir() or not any(manual_dir.iterdir()):
    problem = "is empty" if manual_dir.is_dir() else "is not a directory"
    print(f"error: --manual_dir {args.manual_dir!r} {problem}. {name} expects:\n"
          f"{cls.MANUAL_DOWNLOAD_INSTRUCTIONS}", file=sys.stderr)
    return 2
  tfds.disable_progress_bar()  # Our per-split bars count files and skips instead.
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  except (base.ManualDirError, base.AnnotationError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(summarize(builder))
  return 0


if __name__ == "__main__":
  sys.exit(main())
