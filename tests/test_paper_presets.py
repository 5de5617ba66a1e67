"""configs/paper.py: every preset is the spec's experiment, passes the checks, and trains."""

import pytest

from configs import mtat
from configs import paper
from ssc_jax import config_checks
from ssc_jax import train


def test_every_preset_of_the_spec_exists():
  names = set(paper.presets())
  expected = {"semisl", "ssl", "sl", "tuneplus"}
  for f in ("0.05", "0.1", "0.25", "0.5", "0.75"):
    expected |= {f"ps={f}", f"bs={f}"}
  for t in ("1", "2", "4", "6", "weighted"):
    expected |= {f"sl_T={t}", f"smsl_T={t}"}
  for kind in ("ssl", "sl", "smsl"):
    expected |= {f"views_{kind}_N={n}" for n in (2, 4, 8, 16, 32)}
  assert names == expected


@pytest.mark.parametrize("name", sorted(paper.presets()))
def test_preset_passes_the_config_checks_on_one_device(name):
  config_checks.check_pretrain_config(paper.get_config(name), device_count=1, process_count=1)
  config_checks.check_pretrain_config(paper.get_config(name + ",smoke"), device_count=8,
                                      process_count=1)


def test_presets_change_only_their_factor():
  main, table = mtat.get_config(), paper.presets()
  assert table["semisl"].to_dict() == main.to_dict()
  assert table["tuneplus"].model.encoder == "tuneplus"
  ps = table["ps=0.05"]
  assert (ps.data.labeled_fraction, ps.data.labeled_share, ps.train.total_steps) == (
      0.05, 0.5, 50_000)
  assert ps.data.batch_size * ps.data.num_views == 192
  bs = table["bs=0.25"]
  assert (bs.data.labeled_fraction, bs.data.labeled_share) == (1.0, 0.25)
  sl_t = table["sl_T=4"]
  assert (sl_t.loss.pos_threshold, sl_t.data.labeled_share, sl_t.data.unlabeled) == (4, 1.0, "")
  assert table["smsl_T=weighted"].loss.positives == "weighted"
  views = table["views_ssl_N=16"]
  assert (views.data.num_views, views.data.batch_size, views.data.labeled_share,
          views.data.labeled) == (16, 12, 0.0, "")
  # The ablations keep the augmentation chain at severity 2 (the SL main setup has none).
  assert views.augment.severity == 2 and table["sl"].augment.severity == 0


def test_unknown_preset_and_option_are_refused():
  with pytest.raises(ValueError, match="unknown preset 'ps=0.3'"):
    paper.get_config("ps=0.3")
  with pytest.raises(ValueError, match="unknown option"):
    paper.get_config("semisl,fast")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sl_T=2", "views_smsl_N=4"])
def test_smoke_preset_trains(name, tmp_path_factory):
  """Labeled-only with T_pos = 2, and a mixed batch at N = 4 (every preset is checked above)."""
  config = paper.get_config(name + ",smoke")
  config.data.data_dir = str(tmp_path_factory.getbasetemp() / "data")
  state = train.train_and_evaluate(config, str(tmp_path_factory.mktemp(name.replace("=", "_"))))
  assert int(state.step) == config.train.total_steps
