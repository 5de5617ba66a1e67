"""Packaging: one home for dependencies (pyproject.toml), a lock that satisfies it, and
console scripts that point at callables."""

import configparser
import importlib
import pathlib
import tomllib

from packaging import requirements
from packaging import utils

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = {"ssc-train": "ssc_jax.main:run", "ssc-prepare": "data_pipelines.prepare:main",
           "ssc-embed": "ssc_jax.embed:main", "ssc-report": "ssc_jax.report:main",
           "ssc-convert": "ssc_jax.convert:main"}


def _project() -> dict:
  with open(ROOT / "pyproject.toml", "rb") as f:
    return tomllib.load(f)["project"]


def _lock() -> dict[str, str]:
  """Normalised name -> pinned version of requirements-lock.txt."""
  pins = {}
  for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
    line = line.split("#")[0].strip()
    if line:
      name, version = line.split("==")
      pins[utils.canonicalize_name(name)] = version
  return pins


def test_console_scripts_point_at_callables():
  assert _project()["scripts"] == SCRIPTS
  for target in SCRIPTS.values():
    module, function = target.split(":")
    assert callable(getattr(importlib.import_module(module), function)), target


def test_lock_pins_every_dependency_within_its_bounds():
  pins = _lock()
  project = _project()
  needed = [requirements.Requirement(r) for r in
            project["dependencies"] + project["optional-dependencies"]["test"]]
  applicable = [r for r in needed if r.marker is None or r.marker.evaluate()]
  assert len(applicable) < len(needed)  # The Darwin-only tensorflow line is skipped here.
  for req in applicable:
    name = utils.canonicalize_name(req.name)
    assert name in pins, f"{req.name} is not pinned in requirements-lock.txt"
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"requirements-lock.txt pins {req.name}=={pins[name]}, outside pyproject's {req}")


def test_dependencies_live_only_in_pyproject():
  lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
  assert [l for l in lines if l and not l.startswith("#")] == ["-e ."]
  setup_cfg = configparser.ConfigParser()
  setup_cfg.read(ROOT / "setup.cfg")
  assert setup_cfg.sections() == ["tool:pytest"]
