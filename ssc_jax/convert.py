"""Command line: PyTorch SampleCNN / TUNe+ weights ↔ an ssc_jax `encoder.msgpack`.

  python -m ssc_jax.convert --from-torch clmr_epoch=10000.ckpt --out clmr/encoder.msgpack
  python -m ssc_jax.convert --from-torch semisupcon.ckpt --format semisupcon --out enc.msgpack
  python -m ssc_jax.convert --to-torch workdirs/demo/encoder.msgpack --out demo.safetensors

--from-torch reads a Lightning `.ckpt`, a plain state-dict file or a `.safetensors` file in
the original SemiSupCon or the CLMR key layout (`--format auto` tells them apart by their keys;
see `ssc_jax/inference/torch_weights.py`). PyTorch files are opened only with
`torch.load(weights_only=True)`: a file that would execute pickled code is refused. Unknown,
missing and mis-shaped keys are listed by name. The export's model card records the source
file and its sha256, and the sample rate and view length the source was trained with (SemiSupCon
22050 Hz / 59535 samples, CLMR 22050 Hz / 59049; override with --sample_rate/--view_length).

--to-torch writes the SemiSupCon key layout: `.safetensors` (the default, no torch needed) or
a torch.save state dict (`.pt`, `.pth`, `.bin`, `.ckpt`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssc_jax import checkpoint  # noqa: E402
from ssc_jax.inference import torch_weights  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m ssc_jax.convert",
                                   description="PyTorch SampleCNN/TUNe+ weights <-> ssc_jax.")
  direction = parser.add_mutually_exclusive_group(required=True)
  direction.add_argument("--from-torch", "--from_torch", dest="from_torch", metavar="CKPT",
                         help="PyTorch checkpoint, state dict or .safetensors to import")
  direction.add_argument("--to-torch", "--to_torch", dest="to_torch", metavar="MSGPACK",
                         help="ssc_jax encoder.msgpack to export")
  parser.add_argument("--out", help="output: encoder.msgpack (import; required) or a "
                      ".safetensors/.pt file (export; default <MSGPACK stem>.safetensors)")
  parser.add_argument("--format", default="auto", choices=("auto",) + torch_weights.FORMATS,
                      help="key layout of the PyTorch file (import)")
  parser.add_argument("--sample_rate", "--sample-rate", type=int,
                      help="Hz the source was trained at (import; default: by --format)")
  parser.add_argument("--view_length", "--view-length", type=int,
                      help="samples per view (import; default: by --format)")
  args = parser.parse_args(argv)
  if args.from_torch and not args.out:
    parser.error("--from-torch needs --out (the encoder.msgpack to write).")
  return args


def import_torch(path: str, out: str, fmt: str = "auto", sample_rate: int | None = None,
                 view_length: int | None = None) -> torch_weights.Converted:
  """Converts a PyTorch file to an ssc_jax export with a model card; returns the conversion."""
  converted = torch_weights.from_torch(torch_weights.read_state_dict(path), fmt)
  default_rate, default_length = torch_weights.AUDIO[converted.format]
  checkpoint.export_variables(
      out, converted.variables, converted.model_config,
      sample_rate=sample_rate or default_rate, view_length=view_length or default_length,
      source={"path": os.path.abspath(path), "sha256": torch_weights.file_sha256(path),
              "format": converted.format, "ignored_keys": converted.ignored})
  return converted


def export_torch(path: str, out: str) -> dict:
  """Writes an ssc_jax export's weights as a SemiSupCon-layout state dict; returns it."""
  exported = checkpoint.read_export(path)
  state = torch_weights.to_torch(exported.model_config, exported.variables)
  torch_weights.write_state_dict(out, state)
  return state


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI on `argv` (default sys.argv[1:]); returns the exit status."""
  args = parse_args(argv)
  try:
    if args.from_torch:
      converted = import_torch(args.from_torch, args.out, args.format, args.sample_rate,
                               args.view_length)
      card = checkpoint.read_export(args.out).card
      mc = converted.model_config
      head = (f"projection {mc.projection_hidden}->{mc.projection_dim}" if mc.projection_dim
              else "no projection head")
      named = [k for k in converted.ignored if not k.endswith(".num_batches_tracked")]
      print(f"{args.from_torch}: {converted.format} layout, {mc.encoder} width {mc.width:g}, "
            f"{head}; ignored {len(converted.ignored) - len(named)} num_batches_tracked"
            f"{' and ' + ', '.join(named) if named else ''}.\n"
            f"Wrote {args.out} (card: {card['sample_rate']} Hz, view length "
            f"{card['view_length']} samples).", file=sys.stderr)
    else:
      out = args.out or os.path.splitext(args.to_torch)[0] + torch_weights.SAFETENSORS_SUFFIX
      state = export_torch(args.to_torch, out)
      print(f"Wrote {len(state)} tensors in the SemiSupCon layout to {out}.", file=sys.stderr)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
