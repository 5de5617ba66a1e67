"""Command line: chunk-mean embeddings of audio files and folders.

  python -m ssc_jax.embed --params=workdirs/demo/encoder.msgpack music/ song.mp3 --out=emb.npz
  python -m ssc_jax.embed --workdir=workdirs/demo music/ --out=emb.csv
  python -m ssc_jax.embed --params=encoder.msgpack --layers=4,7,10 --projection music/ --out=e.npz

Each file (any format soundfile or librosa reads, any sample rate, mono or multi-channel) is
mixed to mono, resampled to the sample rate in the encoder's model card, cut into consecutive
chunks of the card's view length (2.7 s for SemiSupCon; at most --max_chunks, the first ones)
and encoded in inference mode on every local device; chunks of many files share fixed-size
jitted batches. --layers adds the chunk-mean of chosen encoder blocks' channel means over time
(SampleCNN blocks 0-10, TUNe+ 1-18); --projection adds the projection head's output. Folders
are searched recursively for audio extensions. Files that cannot be read are reported on
stderr, listed in the output, and skipped.

Output (by the extension of --out):
  .npz  embeddings [n, D] float32, paths [n], num_chunks [n], duration_s [n],
        skipped_paths [m], skipped_reasons [m], source, sample_rate, view_length, and
        layer{i} [n, C_i] per --layers entry and projection [n, P] with --projection;
  .csv  a header `path,num_chunks,duration_s,e0,...,e{D-1}` (then `layer{i}_0,...` and
        `projection_0,...` columns) and one row per file; skipped files go to
        `<out>.skipped.tsv`.
Exit status 1 if no file could be embedded.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import io
import os
import sys
from collections.abc import Iterator, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from tqdm import auto as tqdm  # noqa: E402

from ssc_jax import models  # noqa: E402
from ssc_jax import paths  # noqa: E402
from ssc_jax.inference import audio_files  # noqa: E402
from ssc_jax.inference import embedding as embed_lib  # noqa: E402
from ssc_jax.inference import pretrained  # noqa: E402

OUTPUT_FORMATS = (".npz", ".csv")


def _int_list(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m ssc_jax.embed", description="Chunk-mean embeddings of audio files.")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--params", help="exported encoder (encoder.msgpack)")
  source.add_argument("--workdir", help="pretraining workdir (its export or newest checkpoint)")
  parser.add_argument("--out", required=True, help="output file: .npz or .csv")
  parser.add_argument("--batch_size", type=int, default=32, help="chunks per encoder call")
  parser.add_argument("--max_chunks", type=int, default=64, help="leading chunks per file")
  parser.add_argument("--dtype", default="", choices=("", "float32", "bfloat16"),
                      help="compute dtype (default: the pretraining run's model.dtype)")
  parser.add_argument("--num_workers", type=int, default=4, help="audio decoding threads")
  parser.add_argument("--layers", type=_int_list, default=(),
                      help="comma-separated encoder blocks whose channel means to add, e.g. 4,7,10")
  parser.add_argument("--projection", action="store_true", help="add the projection output")
  parser.add_argument("paths", nargs="+", help="audio files and folders")
  args = parser.parse_args(argv)
  if paths.resolve(args.out).suffix.lower() not in OUTPUT_FORMATS:
    parser.error(f"--out must name a {' or '.join(OUTPUT_FORMATS)} file, got {args.out!r}.")
  if args.batch_size < 1 or args.max_chunks < 1:
    parser.error("--batch_size and --max_chunks must be >= 1.")
  return args


def _decoded(paths: Sequence[str], rate: int, workers: int
             ) -> Iterator[tuple[str, np.ndarray | None, str]]:
  """(path, waveform or None, skip reason) in input order, decoding ahead on threads."""
  def load(path):
    try:
      return path, audio_files.load_audio(path, rate), ""
    except audio_files.DecodeError as e:
      return path, None, e.reason
    except Exception as e:  # pylint: disable=broad-except
      return path, None, f"{type(e).__name__}: {e}"

  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    queue: collections.deque = collections.deque()
    it = iter(paths)
    for path in it:
      queue.append(pool.submit(load, path))
      if len(queue) >= 2 * max(1, workers):
        break
    while queue:
      yield queue.popleft().result()
      nxt = next(it, None)
      if nxt is not None:
        queue.append(pool.submit(load, nxt))


def embed_files(encoder: pretrained.PretrainedEncoder, paths: Sequence[str], *,
                batch_size: int = 32, max_chunks: int = 64, num_workers: int = 4,
                layers: Sequence[int] = (), projection: bool = False,
                progress: bool | None = None) -> dict[str, object]:
  """Embeds audio files; unreadable ones are reported on stderr and skipped.

  Args:
    encoder: the loaded encoder.
    paths: files and folders (see `audio_files.list_audio_files`).
    batch_size: chunks per jitted call (rounded up to a multiple of the local devices).
    max_chunks: leading chunks averaged per file.
    num_workers: decoding threads.
    layers: encoder blocks whose channel means are added (`models.encoder_blocks`).
    projection: add the projection head's output.
    progress: show a progress bar (None: only on a terminal).

  Returns:
    {'embeddings' [n, D], 'paths' [n], 'num_chunks' [n], 'duration_s' [n],
     'skipped' list of (path, reason), 'extra' {name: [n, dim]} for layers and projection}.
  """
  layers = models.check_layers(encoder.model_config.encoder, layers)
  files = audio_files.list_audio_files(paths)
  embedder = embed_lib.local_embedder(encoder.model, encoder.variables, batch_size=batch_size,
                                      layers=layers, projection=projection)
  skipped: list[tuple[str, str]] = []
  durations: dict[str, float] = {}
  bar = tqdm.tqdm(total=len(files), unit="file", desc="embed", disable=progress is False or (
      progress is None and not sys.stderr.isatty()))

  def readable() -> Iterator[tuple[str, np.ndarray]]:
    for path, audio, reason in _decoded(files, encoder.sample_rate, num_workers):
      if audio is None:
        skipped.append((path, reason))
        print(f"skipped {path}: {reason}", file=sys.stderr)
        bar.update(1)
        continue
      durations[path] = len(audio) / encoder.sample_rate
      yield path, audio

  out_paths, out_h, out_chunks = [], [], []
  for path, h, n in embed_lib.iter_track_embeddings(
      embedder, readable(), encoder.view_length, max_chunks=max_chunks,
      batch_size=embedder.batch_size):
    out_paths.append(path)
    out_h.append(h)
    out_chunks.append(n)
    bar.update(1)
  bar.close()
  if out_h:
    parts = embedder.split(np.stack(out_h))
  else:  # Nothing embedded: empty arrays (block widths unknown without a forward pass).
    parts = {name: np.zeros((0, 0), np.float32) for name in embedder.names}
    parts["embedding"] = np.zeros((0, encoder.embedding_dim), np.float32)
  return {"embeddings": parts.pop("embedding"), "extra": parts,
          "paths": out_paths, "num_chunks": np.asarray(out_chunks, np.int64),
          "duration_s": np.asarray([durations[p] for p in out_paths], np.float64),
          "skipped": skipped}


def write_output(path: paths.PathLike, result: dict[str, object],
                 encoder: pretrained.PretrainedEncoder) -> None:
  """Writes `embed_files`' result as .npz or .csv (see the module docstring)."""
  path = paths.resolve(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  skipped = result["skipped"]
  if path.suffix.lower() == ".npz":
    paths.save_npz(path, embeddings=result["embeddings"],
                   paths=np.asarray(result["paths"], str),
                   num_chunks=result["num_chunks"], duration_s=result["duration_s"],
                   skipped_paths=np.asarray([p for p, _ in skipped], str),
                   skipped_reasons=np.asarray([r for _, r in skipped], str),
                   source=np.asarray(encoder.source), sample_rate=encoder.sample_rate,
                   view_length=encoder.view_length, **result["extra"])
    return
  text = io.StringIO()
  writer = csv.writer(text)
  extra = result["extra"]
  columns = [f"e{i}" for i in range(result["embeddings"].shape[1])]
  columns += [f"{name}_{j}" for name, v in extra.items() for j in range(v.shape[1])]
  values = np.concatenate([result["embeddings"]] + list(extra.values()), axis=1)
  writer.writerow(["path", "num_chunks", "duration_s"] + columns)
  for p, n, d, h in zip(result["paths"], result["num_chunks"], result["duration_s"], values):
    writer.writerow([p, int(n), f"{d:.3f}"] + [f"{v:.7g}" for v in h])
  paths.write_atomic(path, text.getvalue())
  if skipped:
    paths.write_atomic(path.parent / (path.name + ".skipped.tsv"),
                       "path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in skipped))


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI on `argv` (default sys.argv[1:]); returns the exit status."""
  args = parse_args(argv)
  encoder = pretrained.load_pretrained(args.params or args.workdir, args.dtype)
  result = embed_files(encoder, args.paths, batch_size=args.batch_size,
                       max_chunks=args.max_chunks, num_workers=args.num_workers,
                       layers=args.layers, projection=args.projection)
  write_output(args.out, result, encoder)
  n, m = len(result["paths"]), len(result["skipped"])
  print(f"Embedded {n} file(s) ({result['embeddings'].shape[1]}-d) to {args.out}; "
        f"skipped {m}.", file=sys.stderr)
  return 0 if n else 1


if __name__ == "__main__":
  sys.exit(main())
