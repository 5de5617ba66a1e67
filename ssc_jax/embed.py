"""Command line: chunk-mean embeddings of audio files and folders.

  python -m ssc_jax.embed --params=workdirs/demo/encoder.msgpack music/ song.mp3 --out=emb.npz
  python -m ssc_jax.embed --workdir=workdirs/demo music/ --out=emb.csv

Each file (any format soundfile or librosa reads, any sample rate, mono or multi-channel) is
mixed to mono, resampled to the encoder's rate, cut into consecutive 2.7 s chunks (at most
--max_chunks, the first ones) and encoded in inference mode; chunks of many files share fixed-
size jitted batches. Folders are searched recursively for audio extensions. Files that cannot
be read are reported on stderr, listed in the output, and skipped.

Output (by the extension of --out):
  .npz  embeddings [n, D] float32, paths [n], num_chunks [n], duration_s [n],
        skipped_paths [m], skipped_reasons [m], source, sample_rate, view_length;
  .csv  a header `path,num_chunks,duration_s,e0,...,e{D-1}` and one row per file; skipped files
        go to `<out>.skipped.tsv`.
Exit status 1 if no file could be embedded.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import os
import sys
from collections.abc import Iterator, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import auto as tqdm  # noqa: E402

from ssc_jax import parallel  # noqa: E402
from ssc_jax.evaluation import audio_files  # noqa: E402
from ssc_jax.evaluation import embed as embed_lib  # noqa: E402
from ssc_jax.evaluation import pretrained  # noqa: E402

OUTPUT_FORMATS = (".npz", ".csv")


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
  parser.add_argument("paths", nargs="+", help="audio files and folders")
  args = parser.parse_args(argv)
  if os.path.splitext(args.out)[1].lower() not in OUTPUT_FORMATS:
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
                progress: bool | None = None) -> dict[str, object]:
  """Embeds audio files; unreadable ones are reported on stderr and skipped.

  Args:
    encoder: the loaded encoder.
    paths: files and folders (see `audio_files.list_audio_files`).
    batch_size: chunks per jitted call (rounded up to a multiple of the local devices).
    max_chunks: leading chunks averaged per file.
    num_workers: decoding threads.
    progress: show a progress bar (None: only on a terminal).

  Returns:
    {'embeddings' [n, D], 'paths' [n], 'num_chunks' [n], 'duration_s' [n],
     'skipped' list of (path, reason)}.
  """
  files = audio_files.list_audio_files(paths)
  devices = jax.local_devices()
  batch_size = -(-batch_size // len(devices)) * len(devices)
  mesh = parallel.make_mesh(devices) if len(devices) > 1 else None
  embedder = embed_lib.ChunkEmbedder(encoder.model, encoder.variables, batch_size=batch_size,
                                     mesh=mesh)
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
      embedder, readable(), encoder.view_length, max_chunks=max_chunks, batch_size=batch_size):
    out_paths.append(path)
    out_h.append(h)
    out_chunks.append(n)
    bar.update(1)
  bar.close()
  dim = encoder.embedding_dim
  return {"embeddings": np.stack(out_h) if out_h else np.zeros((0, dim), np.float32),
          "paths": out_paths, "num_chunks": np.asarray(out_chunks, np.int64),
          "duration_s": np.asarray([durations[p] for p in out_paths], np.float64),
          "skipped": skipped}


def write_output(path: str, result: dict[str, object], encoder: pretrained.PretrainedEncoder
                 ) -> None:
  """Writes `embed_files`' result as .npz or .csv (see the module docstring)."""
  ext = os.path.splitext(path)[1].lower()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  skipped = result["skipped"]
  if ext == ".npz":
    np.savez(path, embeddings=result["embeddings"], paths=np.asarray(result["paths"], str),
             num_chunks=result["num_chunks"], duration_s=result["duration_s"],
             skipped_paths=np.asarray([p for p, _ in skipped], str),
             skipped_reasons=np.asarray([r for _, r in skipped], str),
             source=np.asarray(encoder.source), sample_rate=encoder.sample_rate,
             view_length=encoder.view_length)
    return
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    dim = result["embeddings"].shape[1]
    writer.writerow(["path", "num_chunks", "duration_s"] + [f"e{i}" for i in range(dim)])
    for p, n, d, h in zip(result["paths"], result["num_chunks"], result["duration_s"],
                          result["embeddings"]):
      writer.writerow([p, int(n), f"{d:.3f}"] + [f"{v:.7g}" for v in h])
  if skipped:
    with open(path + ".skipped.tsv", "w") as f:
      f.write("path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in skipped))


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI on `argv` (default sys.argv[1:]); returns the exit status."""
  args = parse_args(argv)
  encoder = pretrained.load_pretrained(args.params or args.workdir, args.dtype)
  result = embed_files(encoder, args.paths, batch_size=args.batch_size,
                       max_chunks=args.max_chunks, num_workers=args.num_workers)
  write_output(args.out, result, encoder)
  n, m = len(result["paths"]), len(result["skipped"])
  print(f"Embedded {n} file(s) ({result['embeddings'].shape[1]}-d) to {args.out}; "
        f"skipped {m}.", file=sys.stderr)
  return 0 if n else 1


if __name__ == "__main__":
  sys.exit(main())
