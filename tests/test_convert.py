"""PyTorch ↔ ssc_jax weights: parity with PyTorch reference models built here from the spec.

The reference SampleCNN (spec §3.1 layer table) and TUNe+ (spec §3.3 table) are written below in
PyTorch with the original module names, so their state-dict keys are the original ones (spec
§8); nothing of ssc_jax's model code is used to build them. Random weights, BatchNorm running
statistics from train-mode passes over random audio, random BN affine parameters.
"""

import os

import jax
import numpy as np
import pytest
import torch
from safetensors import torch as safetensors_torch
from torch import nn

from ssc_jax import checkpoint
from ssc_jax import convert
from ssc_jax.inference import encoder as encoder_lib
from ssc_jax.inference import torch_weights

T = 59535  # SemiSupCon's view length (2.7 s at 22050 Hz).


# ----------------------------------------------------------- PyTorch reference models ---
def conv_bn(cin, cout, stride=1, padding=1, pool=False):
  layers = [nn.Conv1d(cin, cout, 3, stride=stride, padding=padding), nn.BatchNorm1d(cout),
            nn.ReLU()]
  return nn.Sequential(*(layers + [nn.MaxPool1d(3, 3)] if pool else layers))


class TorchSampleCNN(nn.Module):
  """Spec §3.1: block 0 stride 3 no pad; blocks 1-9 pad 1 + MaxPool(3,3); block 10 pad 1."""

  def __init__(self):
    super().__init__()
    ch = [1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]
    blocks = [conv_bn(1, 128, stride=3, padding=0)]
    blocks += [conv_bn(ch[i], ch[i + 1], pool=True) for i in range(1, 10)]
    blocks += [conv_bn(512, 512)]
    self.sequential = nn.Sequential(*blocks)
    self.fc = nn.Linear(512, 128)  # Unused, as in the original.

  def forward(self, x):  # x: [B, 1, T]
    return self.sequential(x).flatten(1)


class Block(nn.Module):
  def __init__(self, cin, cout):
    super().__init__()
    self.layers = conv_bn(cin, cout)

  def forward(self, x):
    return self.layers(x)


class TorchTunePlus(nn.Module):
  """Spec §3.3 table with c = 11, original attribute names (conv1-9, transposedConv6-9,
  convDown1-9, fc)."""

  def __init__(self, c=11):
    super().__init__()
    down = [(1, c), (c, 2 * c), (2 * c, 4 * c), (4 * c, 8 * c), (8 * c, 16 * c)]
    up = [(16 * c, 8 * c), (8 * c, 4 * c), (4 * c, 2 * c), (2 * c, c)]
    tail = [(3 * c, 2 * c), (6 * c, 4 * c), (12 * c, 8 * c), (24 * c, 16 * c), (16 * c, 32 * c),
            (32 * c, 32 * c), (32 * c, 32 * c), (32 * c, 32 * c), (32 * c, 512)]
    for i, (a, b) in enumerate(down + up, start=1):
      setattr(self, f"conv{i}", Block(a, b))
    for j, (a, b) in zip((6, 7, 8, 9), up):
      setattr(self, f"transposedConv{j}", nn.ConvTranspose1d(a, b, 3, stride=3))
    for k, (a, b) in enumerate(tail, start=1):
      setattr(self, f"convDown{k}", Block(a, b))
    self.pool = nn.MaxPool1d(3, 3)
    self.out = nn.AvgPool1d(3)
    self.fc = nn.Linear(512, 1)  # Unused, as in the original.

  def forward(self, x):
    p, cat = self.pool, lambda a, b: torch.cat([a, b], 1)
    c1 = self.conv1(x)
    c2 = self.conv2(p(c1))
    c3 = self.conv3(p(c2))
    c4 = self.conv4(p(c3))
    c5 = self.conv5(p(c4))
    c6 = self.conv6(cat(self.transposedConv6(c5), c4))
    c7 = self.conv7(cat(self.transposedConv7(c6), c3))
    c8 = self.conv8(cat(self.transposedConv8(c7), c2))
    c9 = self.conv9(cat(self.transposedConv9(c8), c1))
    y = self.convDown1(cat(p(c9), c8))
    y = self.convDown2(cat(p(y), c7))
    y = self.convDown3(cat(p(y), c6))
    y = self.convDown4(cat(p(y), c5))
    for k in (5, 6, 7, 8, 9):
      y = getattr(self, f"convDown{k}")(p(y))
    return self.out(y).flatten(1)


class TorchSemiSupCon(nn.Module):
  """Encoder + bias-free projection head (spec §3.2): keys encoder.*, proj_head.{0,2}.weight."""

  def __init__(self, encoder):
    super().__init__()
    self.encoder = encoder
    self.proj_head = nn.Sequential(nn.Linear(512, 512, bias=False), nn.ReLU(),
                                   nn.Linear(512, 128, bias=False))


def tones_and_noise(rng, n):
  """[n, T] float32 clips: 1-3 random tones plus noise at random levels (varied spectra)."""
  t = np.arange(T) / 22050.0
  freqs = rng.uniform(60, 4000, (n, 3, 1))
  amps = rng.uniform(0, 0.5, (n, 3, 1)) * (rng.random((n, 3, 1)) < 0.7)
  noise = rng.uniform(0.005, 0.3, (n, 1)) * rng.standard_normal((n, T))
  return ((amps * np.sin(2 * np.pi * freqs * t)).sum(1) + noise).astype(np.float32)


def make_reference(encoder_cls, seed):
  """A TorchSemiSupCon with random weights and non-trivial BN statistics, in eval mode."""
  torch.manual_seed(seed)
  model = TorchSemiSupCon(encoder_cls())
  gen = torch.Generator().manual_seed(seed)
  rng = np.random.default_rng(seed)
  bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
  with torch.no_grad():
    model.train()
    for m in bns:  # Running statistics = averages over real passes (as trained models have).
      m.momentum = None
    for _ in range(2):
      model.encoder(torch.from_numpy(tones_and_noise(rng, 8))[:, None])
    for m in bns:
      m.momentum = 0.1
      m.weight.uniform_(0.5, 1.5, generator=gen)
      m.bias.normal_(0.0, 0.1, generator=gen)
  return model.eval()


def reference_outputs(model, audio, blocks):
  """Eval-mode h, z and the time-mean of the given block modules' outputs, as NumPy."""
  means = {}
  hooks = [module.register_forward_hook(
      lambda _m, _i, out, name=name: means.__setitem__(name, out.mean(-1).numpy()))
           for name, module in blocks.items()]
  with torch.no_grad():
    h = model.encoder(torch.from_numpy(audio)[:, None])
    z = model.proj_head(h)
  for hook in hooks:
    hook.remove()
  return {"embedding": h.numpy(), "projection": z.numpy(), **means}


def assert_close_relative(got, want, tol=1e-5):
  """max |got - want| <= tol · max |want|, and the reference is not degenerate."""
  assert np.abs(want).max() > 0 and want.std(axis=0).max() > 1e-3 * np.abs(want).max()
  err = np.abs(got - want).max() / np.abs(want).max()
  assert err <= tol, f"relative error {err:.2e} > {tol}"


def save_three_ways(state, folder):
  """The same state dict as a Lightning-style .ckpt, a plain state dict and safetensors."""
  folder.mkdir(parents=True, exist_ok=True)
  ckpt = {"state_dict": state, "epoch": 3, "global_step": 1200,
          "pytorch-lightning_version": "2.1.0",
          "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []}]}
  torch.save(ckpt, folder / "model.ckpt")
  torch.save(state, folder / "state.pt")
  safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()},
                              str(folder / "model.safetensors"))
  return [folder / "model.ckpt", folder / "state.pt", folder / "model.safetensors"]


def import_all(paths, tmp_path, fmt="auto"):
  """Runs the CLI on each file; returns the exports' (model_config, variables, card)."""
  out = []
  for path in paths:
    dest = tmp_path / f"{path.name}.msgpack"
    assert convert.main(["--from-torch", str(path), "--out", str(dest), "--format", fmt]) == 0
    exported = checkpoint.read_export(str(dest))
    out.append((str(dest), exported))
  # The three files give bit-identical variables.
  for _, other in out[1:]:
    jax.tree.map(np.testing.assert_array_equal, other.variables, out[0][1].variables)
  return out


# -------------------------------------------------------------------------- tests ---
@pytest.fixture(scope="module")
def samplecnn_ref():
  return make_reference(TorchSampleCNN, seed=0)


@pytest.fixture(scope="module")
def audio():
  return tones_and_noise(np.random.default_rng(7), 2).reshape(-1)


def test_semisupcon_samplecnn_parity_layers_and_round_trip(samplecnn_ref, audio, tmp_path):
  state = samplecnn_ref.state_dict()
  paths = save_three_ways(state, tmp_path / "torch")
  exports = import_all(paths, tmp_path)
  path, exported = exports[0]
  card = exported.card
  assert (card["encoder"], card["width"], card["sample_rate"], card["view_length"]) == (
      "samplecnn", 1.0, 22050, T)
  assert (card["projection_hidden"], card["projection_dim"], card["dtype"]) == (512, 128,
                                                                               "float32")
  assert card["source"]["format"] == "semisupcon"
  assert card["source"]["sha256"] == torch_weights.file_sha256(str(paths[0]))
  assert "encoder.fc.weight" in card["source"]["ignored_keys"]

  # Flax in inference mode (every local device, the card's view length) vs PyTorch eval mode.
  enc = encoder_lib.load_encoder(path, batch_size=8)
  got = enc.embed_chunks(audio, 22050, layers=(4, 7, 10), projection=True)
  seq = samplecnn_ref.encoder.sequential
  want = reference_outputs(samplecnn_ref, audio.reshape(2, T),
                           {"layer4": seq[4], "layer7": seq[7], "layer10": seq[10]})
  assert {k: v.shape for k, v in got.items()} == {
      "embedding": (2, 512), "layer4": (2, 256), "layer7": (2, 256), "layer10": (2, 512),
      "projection": (2, 128)}
  for name in want:
    assert_close_relative(got[name], want[name])
  np.testing.assert_array_equal(got["layer10"], got["embedding"])

  # Flax -> torch -> Flax is bit-exact; the torch file loads into the reference model.
  out = tmp_path / "back.safetensors"
  assert convert.main(["--to-torch", path, "--out", str(out)]) == 0
  again = torch_weights.from_torch(torch_weights.read_state_dict(str(out)), "semisupcon")
  jax.tree.map(np.testing.assert_array_equal, again.variables, exported.variables)
  fresh = TorchSemiSupCon(TorchSampleCNN())
  missing, unexpected = fresh.load_state_dict(safetensors_torch.load_file(str(out)),
                                              strict=False)
  assert sorted(missing) == ["encoder.fc.bias", "encoder.fc.weight"] and not unexpected
  for name, value in fresh.state_dict().items():
    if "fc." not in name and "num_batches_tracked" not in name:
      torch.testing.assert_close(value, state[name], rtol=0, atol=0)


def test_clmr_layouts_give_the_same_weights(samplecnn_ref, tmp_path):
  state = samplecnn_ref.state_dict()
  ssc = torch_weights.from_torch({k: v.numpy() for k, v in state.items()}, "semisupcon")
  # CLMR Lightning: model.encoder.* / model.projector.*, encoder.fc replaced by Identity.
  lightning = {("model." + k.replace("proj_head.", "projector.")): v
               for k, v in state.items() if not k.startswith("encoder.fc.")}
  exports = import_all(save_three_ways(lightning, tmp_path / "lightning"), tmp_path)
  # CLMR plain state dict: encoder.* and projector.*, here with its used fc.
  plain = {k.replace("proj_head.", "projector."): v for k, v in state.items()}
  exports += import_all(save_three_ways(plain, tmp_path / "plain"), tmp_path)
  for _, exported in exports:
    assert exported.card["source"]["format"] == "clmr"
    assert (exported.card["sample_rate"], exported.card["view_length"]) == (22050, 59049)
    jax.tree.map(np.testing.assert_array_equal, exported.variables, ssc.variables)
  # Encoder only (no projector): converted without a head; auto cannot tell the layouts apart.
  encoder_only = {k: v.numpy() for k, v in state.items() if k.startswith("encoder.")}
  with pytest.raises(torch_weights.CheckpointError, match="--format"):
    torch_weights.from_torch(encoder_only, "auto")
  save_three_ways({k: torch.from_numpy(v) for k, v in encoder_only.items()}, tmp_path / "enc")
  path = str(tmp_path / "headless.msgpack")
  assert convert.main(["--from-torch", str(tmp_path / "enc" / "model.safetensors"), "--format",
                       "clmr", "--out", path]) == 0
  headless = checkpoint.read_export(path)
  assert headless.card["projection_dim"] == 0 and "head" not in headless.variables["params"]
  jax.tree.map(np.testing.assert_array_equal, headless.variables["batch_stats"],
               ssc.variables["batch_stats"])
  with pytest.raises(ValueError, match="no projection head"):
    encoder_lib.load_encoder(path).embed(np.zeros(59049, np.float32), 22050, projection=True)


def test_tuneplus_parity_and_round_trip(audio, tmp_path):
  ref = make_reference(TorchTunePlus, seed=1)
  paths = save_three_ways(ref.state_dict(), tmp_path / "torch")
  (path, exported), *_ = import_all(paths, tmp_path, fmt="semisupcon")
  assert exported.card["encoder"] == "tuneplus" and exported.card["width"] == 1.0
  enc = encoder_lib.load_encoder(path, batch_size=8)
  got = enc.embed_chunks(audio, 22050, layers=(1, 9, 18), projection=True)
  want = reference_outputs(ref, audio.reshape(2, T), {
      "layer1": ref.encoder.conv1, "layer9": ref.encoder.conv9, "layer18": ref.encoder.convDown9})
  assert {k: v.shape for k, v in got.items()} == {
      "embedding": (2, 512), "layer1": (2, 11), "layer9": (2, 11), "layer18": (2, 512),
      "projection": (2, 128)}
  for name in want:
    assert_close_relative(got[name], want[name])
  state = torch_weights.to_torch(exported.model_config, exported.variables)
  again = torch_weights.from_torch(state, "semisupcon")
  jax.tree.map(np.testing.assert_array_equal, again.variables, exported.variables)
  fresh = TorchSemiSupCon(TorchTunePlus())
  missing, unexpected = fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()},
                                              strict=False)
  assert sorted(missing) == ["encoder.fc.bias", "encoder.fc.weight"] and not unexpected
  original = ref.state_dict()
  for name, value in fresh.state_dict().items():
    if "fc." not in name and "num_batches_tracked" not in name:
      torch.testing.assert_close(value, original[name], rtol=0, atol=0)


def test_probe_checkpoint_prefix_and_key_errors(samplecnn_ref):
  state = {k: v.numpy() for k, v in samplecnn_ref.state_dict().items()}
  probe = {"semisupcon." + k: v for k, v in state.items()}
  probe.update({"head.0.weight": np.zeros((512, 512), np.float32),
                "head.2.weight": np.zeros((50, 512), np.float32)})
  converted = torch_weights.from_torch(probe)
  assert converted.format == "semisupcon" and "head.0.weight" in converted.ignored

  missing = dict(state)
  del missing["encoder.sequential.5.1.running_var"]
  with pytest.raises(torch_weights.CheckpointError,
                     match=r"missing keys: encoder\.sequential\.5\.1\.running_var"):
    torch_weights.from_torch(missing)
  extra = dict(state, **{"encoder.sequential.11.0.weight": np.zeros(3, np.float32)})
  with pytest.raises(torch_weights.CheckpointError,
                     match=r"unknown keys: encoder\.sequential\.11\.0\.weight"):
    torch_weights.from_torch(extra)
  wrong = dict(state, **{"encoder.sequential.3.0.weight": np.zeros((256, 128, 5), np.float32)})
  with pytest.raises(torch_weights.CheckpointError,
                     match=r"encoder\.sequential\.3\.0\.weight: shape \(256, 128, 5\), "
                           r"expected \(256, 128, 3\)"):
    torch_weights.from_torch(wrong)
  half_head = {k: v for k, v in state.items() if k != "proj_head.2.weight"}
  with pytest.raises(torch_weights.CheckpointError, match=r"proj_head\.2\.weight"):
    torch_weights.from_torch(half_head)


class _Payload:
  """Unpickling this calls os.makedirs(marker): code execution, had the loader allowed it."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.makedirs, (self.marker,)


def test_pickled_code_and_other_files_are_refused(samplecnn_ref, tmp_path, capsys):
  marker = tmp_path / "pwned"
  evil = tmp_path / "evil.ckpt"
  torch.save({"state_dict": samplecnn_ref.state_dict(), "callbacks": _Payload(str(marker))},
             evil)
  assert convert.main(["--from-torch", str(evil), "--out", str(tmp_path / "e.msgpack")]) == 1
  assert "refused" in capsys.readouterr().err
  assert not marker.exists() and not (tmp_path / "e.msgpack").exists()
  torch.load(evil, weights_only=False)  # The payload is real: an unsafe load runs it.
  assert marker.exists()

  other = tmp_path / "weights.npz"
  np.savez(other, w=np.zeros(3))
  with pytest.raises(torch_weights.CheckpointError, match="refusing"):
    torch_weights.read_state_dict(str(other))
