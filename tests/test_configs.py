"""Every config file builds, refuses a preset it does not define, and is plain data."""

import importlib
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest


@pytest.mark.parametrize("name", ["demo", "mtat", "ssl", "sl"])
def test_unknown_preset_is_refused(name):
  module = importlib.import_module(f"configs.{name}")
  assert module.get_config().data.batch_size > 0
  with pytest.raises(ValueError, match=rf"configs/{name}\.py.*'no_such_preset'"):
    module.get_config("no_such_preset")


def test_configs_are_plain_data_and_start_no_library():
  """Reading every config file (and building each preset) imports neither jax nor ssc_jax."""
  script = textwrap.dedent("""
      import importlib, pathlib, sys
      args = {"probe": "smoke", "paper": None, "similarity": "key_distance", "supervised": "smoke"}
      for path in sorted(pathlib.Path("configs").glob("*.py")):
        module = importlib.import_module(f"configs.{path.stem}")
        if path.stem == "paper":
          for name in module.presets():
            module.get_config(name + ",smoke")
        elif hasattr(module, "get_config"):
          module.get_config(args.get(path.stem))
      loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "ssc_jax"))
      print(loaded)
      """)
  root = pathlib.Path(__file__).resolve().parents[1]
  out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                       text=True, check=True, env={**os.environ, "PYTHONPATH": str(root)})
  assert out.stdout.strip() == "[]", out.stdout
