"""`ram://` paths for etils.epath: TensorFlow's in-memory filesystem, a non-local filesystem
that exists offline. Importing this module registers the scheme.

epath knows `gs://`, `s3://`, `az://` and `hf://` only; `RamPath` maps `ram://a/b` to the parts
('/', 'ram', 'a', 'b') as epath does for `gs://`, and sends every operation to tf.io.gfile.
"""

from etils import epath
from etils.epath import backend
from etils.epath import gpath

SCHEME = "ram://"


@epath.register_path_cls(SCHEME)
class RamPath(gpath.PosixGPath):
  """A `ram://` path served by tf.io.gfile (process-local, lost at exit)."""

  def __new__(cls, *parts):
    full = "/".join(str(p) for p in parts)
    if full.startswith(SCHEME):
      full = "/ram/" + full[len(SCHEME):]
    return super().__new__(cls, full)

  @property
  def _uri_scheme(self):
    return "ram" if self.parts[:2] == ("/", "ram") else None

  @property
  def _backend(self):
    return backend.tf_backend
