"""PyTorch state dicts ↔ ssc_jax variables, for SampleCNN and TUNe+ (spec §3, §8).

Layouts (keys of a PyTorch state dict; `P` is the encoder prefix):

* **semisupcon** (the original SemiSupCon code): `P = encoder.`, projection head
  `proj_head.0.weight` [hidden, D] and `proj_head.2.weight` [P, hidden]. Probe checkpoints put
  `semisupcon.` before every key and add the probe head `head.*` (ignored).
* **clmr** (Spijkervet/CLMR): `P = model.encoder.` inside a Lightning `state_dict`, or
  `encoder.` in a plain state dict; its projector, when present, is `[model.]projector.0.weight`
  and `[model.]projector.2.weight`. Only SampleCNN.

Encoder keys under `P`:

* SampleCNN: `sequential.{i}.0.{weight,bias}` (Conv1d, weight [out, in, 3]) and
  `sequential.{i}.1.{weight,bias,running_mean,running_var,num_batches_tracked}` (BatchNorm1d)
  for blocks i = 0..10 ↔ Flax `conv{i}`, `bn{i}`.
* TUNe+ (the original module names): `conv{j}.layers.{0,1}.*` for j = 1..9 ↔ `block{j}`;
  `convDown{k}.layers.{0,1}.*` for k = 1..9 ↔ `block{9+k}`; `transposedConv{j}.{weight,bias}`
  (ConvTranspose1d, weight [in, out, 3]) for j = 6..9 ↔ `up{j}`.
* The unused `fc.{weight,bias}` is ignored on import and not written on export.

BatchNorm running statistics come along; `num_batches_tracked` is dropped on import and written
as 0 on export (PyTorch uses it only when momentum is None). Kernels are transposed between
PyTorch's [out, in, k] / [in, out, k] / [out, in] and Flax's [k, in, out] / [in, out]; values
are copied bit for bit.

Files are read without executing pickled code: `.safetensors` with the safetensors library,
PyTorch files (zip or legacy pickle) only with `torch.load(weights_only=True)`; anything else
is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from data_pipelines import conventions
from ssc_jax import models

FORMATS = ("semisupcon", "clmr")
# (sample rate, view length) each source was trained with (spec §4.1, §8); they go in the card.
# CLMR's views are 59049 = 3^10 samples, SampleCNN's shortest input.
AUDIO = {"semisupcon": (conventions.SAMPLE_RATE, conventions.VIEW_LENGTH),
         "clmr": (conventions.SAMPLE_RATE, models.samplecnn.MIN_LENGTH)}
SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")

_BN = (("weight", "params", "scale"), ("bias", "params", "bias"),
       ("running_mean", "batch_stats", "mean"), ("running_var", "batch_stats", "var"))


class CheckpointError(ValueError):
  """A checkpoint that cannot be converted (the message names the file or the keys)."""


# --------------------------------------------------------------------------------------------
# Files.
# --------------------------------------------------------------------------------------------


def file_sha256(path: str) -> str:
  """Hex sha256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _safetensors_numpy() -> Any:
  try:
    from safetensors import numpy as safetensors_np  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise CheckpointError("safetensors files need the safetensors package: pip install "
                          "'ssc_jax[torch]' (or pip install safetensors).") from None
  return safetensors_np


def _file_kind(path: str) -> str:
  """'safetensors' or 'torch' from the file's first bytes; CheckpointError otherwise."""
  with open(path, "rb") as f:
    head = f.read(9)
  size = os.path.getsize(path)
  if head[:4] == b"PK\x03\x04":  # A zip archive: torch.save's holds <name>/data.pkl.
    with zipfile.ZipFile(path) as archive:
      if any(n.endswith("/data.pkl") for n in archive.namelist()):
        return "torch"
  elif head[:1] == b"\x80":
    return "torch"  # The legacy torch.save format (a pickle stream).
  if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
    return "safetensors"
  raise CheckpointError(
      f"{path}: neither a PyTorch checkpoint (torch.save zip or pickle) nor a safetensors file; "
      "refusing to read it.")


def _to_numpy(name: str, value: Any, path: str) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top
  if not isinstance(value, torch.Tensor):
    raise CheckpointError(f"{path}: state-dict entry {name!r} is a {type(value).__name__}, "
                          "not a tensor.")
  value = value.detach().cpu()
  if value.dtype in (torch.bfloat16, torch.float16):
    value = value.float()
  return value.numpy().copy()


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a state dict from a PyTorch file or a safetensors file, executing no pickled code.

  A Lightning checkpoint (a dict with 'state_dict') gives its 'state_dict'.

  Args:
    path: `.ckpt`/`.pt`/... written by `torch.save`, or a `.safetensors` file.

  Returns:
    {key: host NumPy array}.

  Raises:
    CheckpointError: the file is neither format, needs code execution to load (refused), or
      does not hold a state dict; or torch is missing for a PyTorch file.
  """
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: no such file.")
  if _file_kind(path) == "safetensors":
    return dict(_safetensors_numpy().load_file(path))
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise CheckpointError(f"{path}: reading PyTorch checkpoints needs torch: pip install "
                          "'ssc_jax[torch]' (or convert the file to .safetensors).") from None
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise CheckpointError(
        f"{path}: refused: loading it needs more than tensors and plain containers, i.e. it "
        f"would execute pickled code (torch.load(weights_only=True) says: {first}). In an "
        "environment you trust, re-save only the weights, e.g. "
        "torch.save(torch.load(path)['state_dict'], 'weights.pt') or as .safetensors.") from e
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                          f"{e}); refusing it.") from e
  state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
  if not isinstance(state, dict) or not state:
    raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict or a "
                          "Lightning checkpoint with 'state_dict'.")
  return {str(k): _to_numpy(str(k), v, path) for k, v in state.items()}


def write_state_dict(path: str, state: dict[str, np.ndarray]) -> None:
  """Writes a state dict as `.safetensors` (no torch needed) or a torch.save file (`.pt`...)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  state = {k: np.ascontiguousarray(v) for k, v in state.items()}
  if path.endswith(SAFETENSORS_SUFFIX):
    _safetensors_numpy().save_file(state, path)
  elif path.endswith(TORCH_SUFFIXES):
    import torch  # pylint: disable=g-import-not-at-top
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
  else:
    raise ValueError(f"{path}: output must end in {SAFETENSORS_SUFFIX} or one of "
                     f"{', '.join(TORCH_SUFFIXES)}.")


# --------------------------------------------------------------------------------------------
# Key tables.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Entry:
  """One PyTorch tensor ↔ one Flax variable.

  Attributes:
    key: PyTorch key, relative to the encoder prefix (or the head's key).
    collection: 'params' or 'batch_stats'.
    path: path inside the collection, e.g. ('encoder', 'conv0', 'kernel').
    kind: 'conv' (torch [out, in, k] ↔ [k, in, out]), 'conv_t' ([in, out, k] ↔ [k, in, out]),
      'linear' ([out, in] ↔ [in, out]) or 'copy'.
  """
  key: str
  collection: str
  path: tuple[str, ...]
  kind: str


def _conv_bn(torch_conv: str, torch_bn: str, flax_conv: tuple[str, ...],
             flax_bn: tuple[str, ...]) -> list[_Entry]:
  return ([_Entry(f"{torch_conv}.weight", "params", flax_conv + ("kernel",), "conv"),
           _Entry(f"{torch_conv}.bias", "params", flax_conv + ("bias",), "copy")]
          + [_Entry(f"{torch_bn}.{t}", c, flax_bn + (f,), "copy") for t, c, f in _BN])


def encoder_table(encoder: str) -> list[_Entry]:
  """The encoder's PyTorch keys (relative to the encoder prefix) and Flax variables."""
  if encoder == "samplecnn":
    return [e for i in models.encoder_blocks("samplecnn")
            for e in _conv_bn(f"sequential.{i}.0", f"sequential.{i}.1", ("encoder", f"conv{i}"),
                              ("encoder", f"bn{i}"))]
  if encoder == "tuneplus":
    table = []
    for i in models.encoder_blocks("tuneplus"):
      name = f"conv{i}" if i <= 9 else f"convDown{i - 9}"
      table += _conv_bn(f"{name}.layers.0", f"{name}.layers.1", ("encoder", f"block{i}", "conv"),
                        ("encoder", f"block{i}", "bn"))
    for j in (6, 7, 8, 9):
      table += [_Entry(f"transposedConv{j}.weight", "params", ("encoder", f"up{j}", "kernel"),
                       "conv_t"),
                _Entry(f"transposedConv{j}.bias", "params", ("encoder", f"up{j}", "bias"), "copy")]
    return table
  raise ValueError(f"unknown encoder {encoder!r}")


def _head_table(prefix: str) -> list[_Entry]:
  return [_Entry(f"{prefix}{i}.weight", "params", ("head", f"dense{j}", "kernel"), "linear")
          for j, i in enumerate((0, 2))]


# Axis order taking each kind of PyTorch weight to its Flax kernel.
_PERMUTATION = {"conv": (2, 1, 0), "conv_t": (2, 0, 1), "linear": (1, 0)}


def _to_flax(kind: str, value: np.ndarray) -> np.ndarray:
  perm = _PERMUTATION.get(kind)
  return value.transpose(perm) if perm and value.ndim == len(perm) else value


def _to_torch(kind: str, value: np.ndarray) -> np.ndarray:
  perm = _PERMUTATION.get(kind)
  return value.transpose(np.argsort(perm)) if perm else value


# --------------------------------------------------------------------------------------------
# Import.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Converted:
  """A state dict converted to ssc_jax.

  Attributes:
    model_config: builds the module (`models.build_model`); projection_dim 0 = no head.
    variables: {'params', 'batch_stats'} of host float32 NumPy arrays.
    format: 'semisupcon' or 'clmr'.
    ignored: keys deliberately left out (unused fc, probe head, num_batches_tracked).
  """
  model_config: ml_collections.ConfigDict
  variables: dict[str, Any]
  format: str
  ignored: list[str]


def _layout(keys: set[str], fmt: str) -> tuple[str, str, str, str]:
  """(format, key prefix to strip, encoder prefix, head prefix) of a state dict."""
  if any(k.startswith("semisupcon.") for k in keys):  # A probe: semisupcon.* and head.*.
    detected, strip = "semisupcon", "semisupcon."
  elif any(k.startswith("model.encoder.") for k in keys):
    detected, strip = "clmr", "model."
  elif any(k.startswith("proj_head.") for k in keys):
    detected, strip = "semisupcon", ""
  elif any(k.startswith("projector.") for k in keys):
    detected, strip = "clmr", ""
  else:
    detected, strip = None, ""
  if fmt == "auto":
    if detected is None:
      raise CheckpointError(
          "cannot tell a SemiSupCon from a CLMR state dict (no proj_head.*, projector.*, "
          "model.encoder.* or semisupcon.* keys); pass --format semisupcon or --format clmr.")
    fmt = detected
  elif fmt not in FORMATS:
    raise ValueError(f"format must be one of {FORMATS} or 'auto', got {fmt!r}")
  elif fmt == "clmr" and strip == "semisupcon.":
    raise CheckpointError("--format clmr, but the keys carry SemiSupCon's 'semisupcon.' prefix.")
  if fmt == "clmr" and any(k.startswith("model.") for k in keys):
    strip = "model."
  return fmt, strip, "encoder.", "proj_head." if fmt == "semisupcon" else "projector."


def _expected_shapes(model_config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Shapes of the variables `model_config` builds (no computation)."""
  model = models.build_model(model_config)
  audio = jnp.zeros((1, models.samplecnn.MIN_LENGTH), jnp.float32)
  shapes = jax.eval_shape(lambda: model.encoder.init(jax.random.key(0), audio, train=False))
  shapes = {"params": {"encoder": shapes["params"]},
            "batch_stats": {"encoder": shapes["batch_stats"]}}
  if model.head is not None:
    h = jnp.zeros((1, models.encoder_output_dim(model_config)), jnp.float32)
    shapes["params"]["head"] = jax.eval_shape(
        lambda: model.head.init(jax.random.key(0), h))["params"]
  return shapes


def _lookup(tree: dict[str, Any], collection: str, path: tuple[str, ...]) -> Any:
  node = tree[collection]
  for p in path:
    node = node[p]
  return node


def _assign(tree: dict[str, Any], collection: str, path: tuple[str, ...], value: Any) -> None:
  node = tree.setdefault(collection, {})
  for p in path[:-1]:
    node = node.setdefault(p, {})
  node[path[-1]] = value


def from_torch(state: dict[str, np.ndarray], fmt: str = "auto") -> Converted:
  """Converts a PyTorch SampleCNN/TUNe+ state dict (see the module docstring) to ssc_jax.

  Args:
    state: {key: array}, as from `read_state_dict`.
    fmt: 'semisupcon', 'clmr' or 'auto' (from the keys).

  Returns:
    Converted.

  Raises:
    CheckpointError: no encoder found, or keys missing, unknown or mis-shaped (all listed by
      name).
  """
  fmt, strip, enc, head = _layout(set(state), fmt)
  original = {(k[len(strip):] if k.startswith(strip) else k): k for k in state}
  state = {new: state[old] for new, old in original.items()}
  name = lambda k: original.get(k, strip + k)  # The key as the file spells it.
  # The last conv's output channels give the width (512 channels at width 1.0).
  if f"{enc}sequential.10.0.weight" in state:
    encoder, last, full = ("samplecnn", f"{enc}sequential.10.0.weight",
                           models.samplecnn.CHANNELS[-1])
  elif f"{enc}convDown9.layers.0.weight" in state:
    encoder, last, full = ("tuneplus", f"{enc}convDown9.layers.0.weight",
                           models.tune.OUTPUT_CHANNELS)
  else:
    raise CheckpointError(
        f"no SampleCNN or TUNe+ encoder in the {fmt} layout: expected "
        f"{strip}{enc}sequential.10.0.weight (SampleCNN) or {strip}{enc}convDown9.layers.0.weight "
        f"(TUNe+); first keys: {sorted(state)[:5]}")
  if fmt == "clmr" and encoder != "samplecnn":
    raise CheckpointError("CLMR checkpoints hold a SampleCNN; this one has TUNe+ keys.")
  output_dim = int(state[last].shape[0])
  table = [dataclasses.replace(e, key=enc + e.key) for e in encoder_table(encoder)]
  head_keys = [e.key for e in _head_table(head)]
  if any(k in state for k in head_keys):
    table += _head_table(head)
    hidden = int(state[head_keys[0]].shape[0]) if head_keys[0] in state else 0
    proj = int(state[head_keys[1]].shape[0]) if head_keys[1] in state else 0
  else:
    hidden = proj = 0
  model_config = ml_collections.ConfigDict({
      "encoder": encoder, "width": output_dim / full,
      "projection_hidden": hidden, "projection_dim": proj, "dtype": "float32"})
  # With half a head, check the encoder's shapes; the missing head key is reported below.
  expected = _expected_shapes(model_config if hidden and proj else ml_collections.ConfigDict(
      {**model_config.to_dict(), "projection_dim": 0}))

  variables: dict[str, Any] = {}
  missing, misshaped = [], []
  for entry in table:
    if entry.key not in state:
      missing.append(entry.key)
      continue
    value = _to_flax(entry.kind, np.asarray(state[entry.key], np.float32))
    try:
      want = tuple(_lookup(expected, entry.collection, entry.path).shape)
    except KeyError:
      want = None
    if want is not None and value.shape != want:
      misshaped.append(f"{name(entry.key)}: shape {tuple(state[entry.key].shape)}, expected "
                       f"{tuple(_to_torch(entry.kind, np.empty(want)).shape)}")
      continue
    _assign(variables, entry.collection, entry.path, value)
  used = {e.key for e in table}
  ignored = sorted(k for k in state if k not in used and (
      k.endswith(".num_batches_tracked") or k.startswith(f"{enc}fc.")
      or (fmt == "semisupcon" and k.startswith("head."))))
  unknown = sorted(k for k in state if k not in used and k not in ignored)
  problems = []
  if missing:
    problems.append(f"missing keys: {', '.join(name(k) for k in missing)}")
  if unknown:
    problems.append(f"unknown keys: {', '.join(name(k) for k in unknown)}")
  if misshaped:
    problems.append(f"mis-shaped keys ({encoder}, width {model_config.width:g}): "
                    + "; ".join(misshaped))
  if problems:
    raise CheckpointError(f"cannot convert this {fmt} {encoder} state dict: "
                          + " | ".join(problems))
  return Converted(model_config, variables, fmt, [name(k) for k in ignored])


# --------------------------------------------------------------------------------------------
# Export.
# --------------------------------------------------------------------------------------------


def to_torch(model_config: ml_collections.ConfigDict, variables: dict[str, Any]
             ) -> dict[str, np.ndarray]:
  """ssc_jax variables → a state dict in the original SemiSupCon key layout.

  Load it into a PyTorch SampleCNN/TUNe+ built as in the original with
  `load_state_dict(sd, strict=False)`: the only keys it lacks are the unused `encoder.fc.*`.

  Args:
    model_config: the export's `config.model`.
    variables: {'params', 'batch_stats'}.

  Returns:
    {key: float32 array (int64 0 for num_batches_tracked)}.
  """
  variables = jax.device_get(variables)
  table = [dataclasses.replace(e, key="encoder." + e.key)
           for e in encoder_table(model_config.encoder)]
  if "head" in variables["params"]:
    table += _head_table("proj_head.")
  state = {}
  for entry in table:
    value = np.asarray(_lookup(variables, entry.collection, entry.path), np.float32)
    state[entry.key] = np.array(_to_torch(entry.kind, value), order="C")  # A writable copy.
    if entry.key.endswith(".running_var"):
      state[entry.key.replace("running_var", "num_batches_tracked")] = np.array(0, np.int64)
  return state
