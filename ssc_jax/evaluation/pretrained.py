"""Loading a pretrained encoder: an exported msgpack file or a pretraining workdir.

Accepted paths:
* an `encoder.msgpack` written by `checkpoint.export_variables` (plain Flax params plus the
  model config);
* a pretraining workdir: its `encoder.msgpack` if present (written at the end of pretraining),
  else the newest Orbax checkpoint in `<workdir>/checkpoints`, rebuilt from `config.json`
  (so a run that is still going, or was stopped, can be probed too).
The sample rate and view length come from the workdir's `config.json` when there is one
(next to the msgpack file, or in the workdir); otherwise 22050 Hz and 59535 samples.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import flax.serialization
import jax
import ml_collections

from ssc_jax import checkpoint
from ssc_jax import config_checks
from ssc_jax import models

DEFAULT_SAMPLE_RATE = 22050
DEFAULT_VIEW_LENGTH = 59535
EXPORT_NAME = "encoder.msgpack"
CONFIG_NAME = "config.json"


@dataclasses.dataclass
class PretrainedEncoder:
  """A frozen SemiSupCon model and what it expects.

  Attributes:
    model: the SemiSupConModel (encoder + projection head).
    variables: {'params', 'batch_stats'} as host/device arrays.
    model_config: the `config.model` section it was built from.
    sample_rate: Hz of the audio it was trained on.
    view_length: samples per view in pretraining (the default chunk length).
    source: the file or checkpoint it was read from.
  """
  model: models.SemiSupConModel
  variables: dict[str, Any]
  model_config: ml_collections.ConfigDict
  sample_rate: int
  view_length: int
  source: str

  @property
  def embedding_dim(self) -> int:
    return models.encoder_output_dim(self.model_config)


def _read_config(path: str) -> ml_collections.ConfigDict | None:
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    try:
      return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e}).") from e


def _data_settings(config: ml_collections.ConfigDict | None) -> tuple[int, int]:
  data = (config or {}).get("data", None) or {}
  return (int(data.get("sample_rate", DEFAULT_SAMPLE_RATE)),
          int(data.get("view_length", DEFAULT_VIEW_LENGTH)))


def _restore_latest(workdir: str, config: ml_collections.ConfigDict) -> tuple[int, Any]:
  """Newest Orbax step of a pretraining workdir -> (step, variables) on one device."""
  from ssc_jax import parallel  # pylint: disable=g-import-not-at-top
  from ssc_jax import train  # pylint: disable=g-import-not-at-top
  ckpt = checkpoint.Checkpointer(workdir)
  step = ckpt.latest_step()
  if step is None:
    ckpt.close()
    raise FileNotFoundError(
        f"{workdir}: neither {EXPORT_NAME} nor any checkpoint under "
        f"{os.path.join(workdir, 'checkpoints')}; is this a pretraining workdir?")
  mesh = parallel.make_mesh(jax.devices()[:1])
  model = models.build_model(config.model)
  tx = train.make_optimizer(config)
  # A real (throw-away) state as the restore target: its structure always matches what
  # train.py saves, whatever TrainState holds.
  fresh = train.create_train_state(config, model, tx, mesh, jax.random.key(0))
  state = ckpt.restore(step, train.abstract_train_state(fresh))
  ckpt.close()
  return step, jax.device_get(state.variables)


def _with_dtype(model_config: ml_collections.ConfigDict,
                dtype: str) -> ml_collections.ConfigDict:
  """`model_config` computing in `dtype` ("" keeps the run's; exports before model.dtype: f32)."""
  model_config = ml_collections.ConfigDict(model_config.to_dict())
  if dtype:
    if dtype not in config_checks.COMPUTE_DTYPES:
      raise ValueError(f"dtype={dtype!r}: use one of {config_checks.COMPUTE_DTYPES}.")
    model_config.dtype = dtype
  return model_config


def load_pretrained(path: str, dtype: str = "") -> PretrainedEncoder:
  """Loads an encoder from an exported msgpack file or a pretraining workdir.

  Args:
    path: `encoder.msgpack` file, or a pretraining workdir.
    dtype: compute dtype for inference ("float32" or "bfloat16"); "" = the run's `model.dtype`.

  Returns:
    PretrainedEncoder.

  Raises:
    FileNotFoundError: the path does not exist, or a workdir has neither an export nor a
      checkpoint.
    ValueError: a file that is not an ssc_jax export, or a workdir without config.json.
  """
  if not path:
    raise ValueError("no pretrained encoder given; set --config.pretrained=<pretraining workdir "
                     "or encoder.msgpack>.")
  path = os.path.expanduser(path)
  if os.path.isfile(path):
    model_config, variables = _load_export(path)
    model_config = _with_dtype(model_config, dtype)
    model = models.build_model(model_config)
    config = _read_config(os.path.join(os.path.dirname(os.path.abspath(path)), CONFIG_NAME))
    sample_rate, view_length = _data_settings(config)
    return PretrainedEncoder(model, variables, model_config, sample_rate, view_length, path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"pretrained encoder {path!r}: no such file or directory.")
  export = os.path.join(path, EXPORT_NAME)
  if os.path.isfile(export):
    return load_pretrained(export, dtype)
  config = _read_config(os.path.join(path, CONFIG_NAME))
  if config is None:
    raise ValueError(f"{path}: no {EXPORT_NAME} and no {CONFIG_NAME}; cannot rebuild the model "
                     "to restore a checkpoint.")
  step, variables = _restore_latest(path, config)
  sample_rate, view_length = _data_settings(config)
  model_config = _with_dtype(config.model, dtype)
  return PretrainedEncoder(models.build_model(model_config), variables, model_config,
                           sample_rate, view_length, f"{path} (checkpoint step {step})")


def _load_export(path: str) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """Reads an `export_variables` file once: (model config, variables)."""
  with open(path, "rb") as f:
    try:
      tree = flax.serialization.msgpack_restore(f.read())
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"{path}: not an ssc_jax encoder export (unreadable msgpack: {e}).") from e
  meta = tree.get("ssc_jax") if isinstance(tree, dict) else None
  if not meta or meta.get("format") != checkpoint.EXPORT_FORMAT:
    raise ValueError(f"{path}: not an ssc_jax encoder export (expected format "
                     f"{checkpoint.EXPORT_FORMAT}).")
  model_config = ml_collections.ConfigDict(json.loads(meta["model_config"]))
  return model_config, {"params": tree["params"], "batch_stats": tree["batch_stats"]}
