"""Imports only point down: data_pipelines → library → inference → evaluation → CLIs.

Every module under ssc_jax/ and data_pipelines/ is parsed with `ast` (nothing is imported),
and each import, at the top or inside a function, is placed in its layer:

  0 data_pipelines.*        TFDS builders and tf.data input (no JAX); configs.* (plain data,
                            tests/test_configs.py checks they load no library), of which the
                            library reads the augmentation defaults (configs.augment)
  1 the library             ssc_jax.{models, augment, losses, train, checkpoint, ...}
  2 ssc_jax.inference.*     loading encoders, chunking, embedding, the `Encoder` API
  3 ssc_jax.evaluation.*    probes, metrics, robustness, reports
  4 the CLIs                ssc_jax.{main, embed, report, convert}, and the package root's
                            lazy `ssc_jax.load_encoder` / `ssc_jax.Encoder`

An import of a higher layer fails the test, listed with file, line and whether it sits at the
top of the module or inside a function (a deferred import hides a cycle, it does not remove it).
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("ssc_jax", "data_pipelines", "configs")
CLIS = frozenset({"ssc_jax.main", "ssc_jax.embed", "ssc_jax.report", "ssc_jax.convert"})
LAYER_NAMES = ("data_pipelines", "library", "inference", "evaluation", "CLI")


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
  path = ROOT.joinpath(*name.split("."))
  return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _layer(module: str, *, importer: bool = False) -> int | None:
  """The layer of one of our modules (None for third-party ones).

  The package root `ssc_jax` is the library when imported (its import loads nothing else, see
  `test_the_package_root_loads_nothing_at_import`) and the public surface as an importer.
  """
  if module == "ssc_jax":
    return 4 if importer else 1
  if module in CLIS:
    return 4
  for prefix, layer in (("ssc_jax.evaluation", 3), ("ssc_jax.inference", 2), ("ssc_jax", 1),
                        ("data_pipelines", 0), ("configs", 0)):
    if module == prefix or module.startswith(prefix + "."):
      return layer
  return None


def _imports(path: pathlib.Path) -> list[tuple[str, int, bool]]:
  """(imported module, line, at module top level) for every import of our packages."""
  tree = ast.parse(path.read_text(), filename=str(path))
  top_level = {id(node) for node in tree.body}
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from a.b import c` imports module a.b.c when that is a module, else a name of a.b.
      names = [f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}")
               else node.module for a in node.names]
    else:
      continue
    for name in names:
      if name.split(".")[0] in PACKAGES:
        out.append((name, node.lineno, id(node) in top_level))
  return out


def _all_imports() -> list[tuple[str, str, int, bool]]:
  """(importer, imported, line, top level) over every module of PACKAGES."""
  edges = []
  for package in PACKAGES:
    for path in sorted((ROOT / package).rglob("*.py")):
      importer = _module_name(path)
      edges += [(importer, name, line, top) for name, line, top in _imports(path)]
  return edges


def _describe(edge: tuple[str, str, int, bool]) -> str:
  importer, imported, line, top = edge
  where = "at the top" if top else "inside a function"
  return (f"{importer.replace('.', '/')}.py:{line} ({LAYER_NAMES[_layer(importer, importer=True)]})"
          f" imports {imported} ({LAYER_NAMES[_layer(imported)]}) {where}")


def test_the_walk_sees_the_layers():
  # Guards the test itself: a broken walk would find no edges and pass.
  edges = {(a, b) for a, b, _, _ in _all_imports()}
  assert ("ssc_jax.inference.encoder", "ssc_jax.inference.embedding") in edges
  assert ("ssc_jax.main", "ssc_jax.evaluation.probe") in edges  # Inside a function.
  assert ("ssc_jax.train", "data_pipelines.pretrain_input") in edges
  assert ("data_pipelines.pretrain_input", "data_pipelines.datasets") in edges
  assert _layer("ssc_jax.inference.pretrained") == 2 and _layer("ssc_jax.checkpoint") == 1


def test_no_import_points_upward():
  upward = [e for e in _all_imports()
            if _layer(e[1]) > _layer(e[0], importer=True)]
  assert not upward, "Imports that point upward:\n" + "\n".join(map(_describe, upward))


def test_only_evaluation_and_the_clis_import_evaluation():
  outside = [e for e in _all_imports()
             if e[1].startswith("ssc_jax.evaluation")
             and _layer(e[0], importer=True) < 3]
  assert not outside, "\n".join(map(_describe, outside))


def test_only_the_cli_imports_the_trainer():
  # Loading weights for inference or evaluation never builds a train state (it restores with
  # checkpoint.restore_variables), so only the two training jobs need ssc_jax.train: the
  # training CLI and the supervised end-to-end baseline (its train state and progress line).
  trainers = ("ssc_jax.main", "ssc_jax.evaluation.supervised")
  users = [e for e in _all_imports() if e[1] == "ssc_jax.train" and e[0] not in trainers]
  assert not users, "\n".join(map(_describe, users))


def test_data_pipelines_import_no_training_or_evaluation():
  bad = [e for e in _all_imports() if e[0].startswith("data_pipelines")
         and e[1].startswith(("ssc_jax.evaluation", "ssc_jax.train"))]
  assert not bad, "\n".join(map(_describe, bad))


def test_the_package_root_loads_nothing_at_import():
  top = [e for e in _all_imports() if e[0] == "ssc_jax" and e[3]]
  assert not top, "\n".join(map(_describe, top))

