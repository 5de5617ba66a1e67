"""The render tool writes a PNG with one row per transform."""

import numpy as np

from ssc_jax.augment import render


def test_render_writes_a_png(tmp_path):
  clip = render.synthetic_clip(seconds=0.3)
  rows = render.render_rows(clip, severity=2, seed=0, names=("gain", "reverse"))
  assert [label for label, _ in rows] == ["input", "gain", "reverse"]
  np.testing.assert_array_equal(rows[2][1], clip[::-1])
  out = tmp_path / "augment.png"
  render.save_figure(rows, str(out), severity=2)
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_cli_refuses_unknown_names(tmp_path, capsys):
  import pytest
  with pytest.raises(SystemExit):
    render.main([f"--out={tmp_path / 'x.png'}", "--only=gain,nope"])
  assert "valid names" in capsys.readouterr().err
