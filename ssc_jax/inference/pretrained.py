"""Loading a pretrained encoder: an exported msgpack file or a pretraining workdir.

Accepted paths:
* an `encoder.msgpack` written by `checkpoint.export_variables` (plain Flax params plus the
  model config);
* a pretraining workdir: its `encoder.msgpack` if present (written at the end of pretraining),
  else the newest Orbax checkpoint in `<workdir>/checkpoints`, rebuilt from `config.json`
  (so a run that is still going, or was stopped, can be probed too).
The sample rate and view length come from the export's model card. An export written before
cards existed falls back, with a warning naming the values, to the `config.json` next to it,
else `conventions.SAMPLE_RATE` and `conventions.VIEW_LENGTH` (22050 Hz, 59535 samples); a
workdir checkpoint uses the workdir's `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any
import warnings

import ml_collections

from data_pipelines import conventions
from ssc_jax import checkpoint
from ssc_jax import config_checks
from ssc_jax import models
from ssc_jax import paths

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
    card: the export's model card (`checkpoint.model_card`), None for a checkpoint or an old
      export.
  """
  model: models.SemiSupConModel
  variables: dict[str, Any]
  model_config: ml_collections.ConfigDict
  sample_rate: int
  view_length: int
  source: str
  card: dict[str, Any] | None = None

  @property
  def embedding_dim(self) -> int:
    return models.encoder_output_dim(self.model_config)


def _read_config(path: paths.PathLike) -> ml_collections.ConfigDict | None:
  path = paths.resolve(path)
  if not path.is_file():
    return None
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e}).") from e


def _data_settings(config: ml_collections.ConfigDict | None) -> tuple[int, int]:
  data = (config or {}).get("data", None) or {}
  return (int(data.get("sample_rate", conventions.SAMPLE_RATE)),
          int(data.get("view_length", conventions.VIEW_LENGTH)))


def _with_dtype(model_config: ml_collections.ConfigDict,
                dtype: str) -> ml_collections.ConfigDict:
  """`model_config` computing in `dtype` ("" keeps the run's; exports before model.dtype: f32)."""
  model_config = ml_collections.ConfigDict(model_config.to_dict())
  if dtype:
    if dtype not in config_checks.COMPUTE_DTYPES:
      raise ValueError(f"dtype={dtype!r}: use one of {config_checks.COMPUTE_DTYPES}.")
    model_config.dtype = dtype
  return model_config


def load_pretrained(path: paths.PathLike, dtype: str = "") -> PretrainedEncoder:
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
  path = paths.resolve(path)
  if path.is_file():
    with warnings.catch_warnings():  # A missing card gets the warning below, naming values.
      warnings.simplefilter("ignore", UserWarning)
      exported = checkpoint.read_export(path)
    model_config = _with_dtype(exported.model_config, dtype)
    if exported.card is not None:
      sample_rate, view_length = exported.card["sample_rate"], exported.card["view_length"]
    else:
      config_path = path.parent / CONFIG_NAME
      config = _read_config(config_path)
      sample_rate, view_length = _data_settings(config)
      warnings.warn(f"{path}: no model card (exported before cards existed); using sample "
                    f"rate {sample_rate} Hz and view length {view_length} samples from "
                    f"{config_path if config else 'the SemiSupCon defaults'}.", UserWarning,
                    stacklevel=2)
    return PretrainedEncoder(models.build_model(model_config), exported.variables,
                             model_config, sample_rate, view_length, str(path), exported.card)
  if not path.is_dir():
    raise FileNotFoundError(f"pretrained encoder {path!r}: no such file or directory.")
  export = path / EXPORT_NAME
  if export.is_file():
    return load_pretrained(export, dtype)
  config = _read_config(path / CONFIG_NAME)
  if config is None:
    raise ValueError(f"{path}: no {EXPORT_NAME} and no {CONFIG_NAME}; cannot rebuild the model "
                     "to restore a checkpoint.")
  try:
    step, variables = checkpoint.restore_variables(path)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{path}: neither {EXPORT_NAME} nor any checkpoint ({e}); is this "
                            "a pretraining workdir?") from e
  sample_rate, view_length = _data_settings(config)
  model_config = _with_dtype(config.model, dtype)
  return PretrainedEncoder(models.build_model(model_config), variables, model_config,
                           sample_rate, view_length, f"{path} (checkpoint step {step})")
