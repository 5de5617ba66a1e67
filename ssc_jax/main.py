"""Command line: `ssc-train --config=configs/<name>.py --workdir=DIR` (or `python -m ssc_jax.main`).

Pretraining configs run `train.train_and_evaluate`; probe configs (`job = "probe"`,
configs/probe.py) run the downstream evaluation `evaluation.probe.run`; supervised baseline
configs (`job = "supervised"`, configs/supervised.py) run `evaluation.supervised.run`. When a
pretraining config sets `evaluate.probe` (the demo), `evaluation.comparison.run` then probes the
trained encoder against a random-init reference.

Override any config field with `--config.<section>.<field>=value`; unknown fields are refused.
Running the same command again resumes from the newest checkpoint in DIR.
"""

import logging as pylogging
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from ssc_jax import parallel  # noqa: E402
from ssc_jax import train  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and exports.")
flags.mark_flags_as_required(["config", "workdir"])
# ml_collections 1.1 loads --config files with the deprecated `SourceFileLoader.load_module()`.
warnings.filterwarnings("ignore", r"the load_module\(\) method is deprecated", DeprecationWarning,
                        "importlib._bootstrap")


class _ThirdPartyInfoFilter(pylogging.Filter):
  """Drops INFO chatter of libraries (Orbax, TensorFlow, TFDS) from the absl log; keeps their
  warnings, except deprecation notices about TFDS's own internals.

  TFDS 4.9 reads `FeatureConnector.dtype` in its partial decoding and calls
  `tf.data.experimental.Counter` when asked for `tfds_id`s (`datasets.read_indexed`); TFDS
  logs the first and TensorFlow the second ("From .../tensorflow_datasets/...: CounterV2 ...
  is deprecated"). Neither names a call of ours, and no TFDS release avoids them.
  """

  _NOISY = (os.sep + "orbax" + os.sep, os.sep + "tensorflow" + os.sep,
            os.sep + "tensorflow_datasets" + os.sep)
  _TFDS = os.sep + "tensorflow_datasets" + os.sep

  def filter(self, record: pylogging.LogRecord) -> bool:
    if not any(n in record.pathname for n in self._NOISY):
      return True
    if record.levelno < pylogging.WARNING:
      return False
    message = record.getMessage()
    if "deprecated" not in message:
      return True
    call_site = message.split(": ", 1)[0] if message.startswith("From ") else record.pathname
    return self._TFDS not in call_site


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_ThirdPartyInfoFilter())
  # tf.data only feeds host memory; keep TensorFlow away from any accelerator.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
  config = _CONFIG.value
  parallel.maybe_initialize_distributed(config.distributed)
  logging.info("JAX %s: process %d/%d, local devices %s.", jax.__version__, jax.process_index(),
               jax.process_count(), jax.local_devices())
  run_job(config, _WORKDIR.value)


def run_job(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Runs the config's job: a probe (`job = "probe"`), the supervised baseline
  (`job = "supervised"`), or pretraining followed, when `evaluate.probe` is set, by probes of
  the trained encoder against a random-init reference."""
  job = config.get("job", "pretrain")
  if job == "probe":
    from ssc_jax.evaluation import probe  # pylint: disable=g-import-not-at-top
    probe.run(config, workdir)
    return
  if job == "supervised":
    from ssc_jax.evaluation import supervised  # pylint: disable=g-import-not-at-top
    supervised.run(config, workdir)
    return
  state = train.train_and_evaluate(config, workdir)
  if config.evaluate.probe and int(state.step) == config.train.total_steps:
    from ssc_jax.evaluation import comparison  # pylint: disable=g-import-not-at-top
    comparison.run(config, workdir)


def run() -> None:
  """Console script `ssc-train`: `python -m ssc_jax.main`, with the same `--help`."""
  for holder in (_CONFIG, _WORKDIR):  # absl's --help lists the flags of sys.argv[0] only.
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[holder.name])
  sys.modules["__main__"].__doc__ = __doc__
  app.run(main)


if __name__ == "__main__":
  run()
