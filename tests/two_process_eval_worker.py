"""One of two local processes running the evaluation paths over a 2×2-device mesh.

Usage: python tests/two_process_eval_worker.py PROCESS_ID PORT OUT_DIR EXPORT DATA_DIR
Both processes embed the test split of synthetic_music/tiny (`features.embed_split`, each
feeding its share of every global batch) and run the smoke probe (`probe.run`) on the
exported encoder EXPORT; process 0 writes `embed_test.npz` and the probe's workdir
`OUT_DIR/probe`. The data in DATA_DIR must already be prepared.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 2)

import numpy as np  # noqa: E402

from ssc_jax import parallel  # noqa: E402
from ssc_jax.evaluation import features  # noqa: E402
from ssc_jax.evaluation import probe  # noqa: E402
from ssc_jax.inference import embedding  # noqa: E402
from ssc_jax.inference import pretrained  # noqa: E402
from tests import test_two_process_eval as spec  # noqa: E402


def main() -> None:
  process_id, port, out, export, data_dir = sys.argv[1:6]
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                             process_id=int(process_id), initialization_timeout=60)
  assert jax.device_count() == 4 and jax.process_count() == 2
  mesh = parallel.make_mesh()
  encoder = pretrained.load_pretrained(export)
  feats = features.embed_split(encoder.model, embedding.replicate(encoder.variables, mesh), mesh,
                               **spec.embed_kwargs(data_dir))
  results = probe.run(spec.probe_config(export, data_dir), os.path.join(out, "probe"))
  if jax.process_index() == 0:
    np.savez(os.path.join(out, "embed_test.npz"), track_h=feats.track_h,
             track_zhat=feats.track_zhat, labels=feats.labels,
             chunks_per_track=feats.chunks_per_track, accuracy=results["test"]["accuracy"])
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
