"""The one path layer for everything read or written under `--workdir` (and exported files).

Paths are `etils.epath.Path`s: local paths use the OS, `gs://` (and s3://, az://) go through
tf.io.gfile, and any scheme registered with `epath.register_path_cls` works the same way (the
tests register TensorFlow's in-memory `ram://`). Orbax checkpoints take the same Path and
write through epath and tensorstore (`gs://` or local only). `data.data_dir` is handed to TFDS,
which reads it (local or `gs://`) through epath and tf.io.gfile. Library code never calls
`open`, `os.path` or `os.makedirs` on workdir paths.
"""

from __future__ import annotations

import io
import os

from etils import epath
import numpy as np

PathLike = str | os.PathLike


def resolve(path: PathLike) -> epath.Path:
  """`path` as an epath Path: URIs (`gs://…`) unchanged, local paths `~`-expanded, absolute."""
  text = os.fspath(path)
  if "://" in text:
    return epath.Path(text)
  return epath.Path(os.path.abspath(os.path.expanduser(text)))


def write_atomic(path: PathLike, data: bytes | str) -> None:
  """Writes `data` to `path` via a temporary file renamed over it (creates the parent)."""
  path = resolve(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / (path.name + ".tmp")
  if isinstance(data, str):
    tmp.write_text(data)
  else:
    tmp.write_bytes(data)
  tmp.replace(path)


def save_npz(path: PathLike, **arrays: np.ndarray) -> None:
  """`np.savez(path, **arrays)` for any filesystem (zip needs a seekable file: built in memory)."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_atomic(path, buffer.getvalue())
