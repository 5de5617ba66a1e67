"""The paper's pretraining experiments as presets: `configs/paper.py:<preset>[,smoke]`.

  python -m ssc_jax.main --config=configs/paper.py:ps=0.05 --workdir=$HOME/runs/ps=0.05

Presets (spec §6; docs/experiments.md maps each one to the paper and gives the probe command
that scores it):
  semisl, ssl, sl          the main setups (= configs/mtat.py, ssl.py, sl.py);
  tuneplus                 semisl with the TUNe+ encoder;
  ps=<f>                   p_s sweep, f in 0.05, 0.1, 0.25, 0.5, 0.75 (b_s 0.5);
  bs=<f>                   b_s sweep, same values (p_s 1);
  sl_T=<t>, smsl_T=<t>     positive threshold T_pos in 1, 2, 4, 6 or weighted (Dice), fully
                           supervised (b_s 1) or semi-supervised (b_s 0.5);
  views_<kind>_N=<n>       number of views n in 2, 4, 8, 16, 32 at constant B·N = 192, kind
                           ssl (b_s 0), sl (b_s 1) or smsl (b_s 0.5).
Every ablation runs 50k steps at B·N = 192 with SampleCNN, τ 0.1, Adam 1e-4 and the 6-transform
chain at severity 2, as the original's ablation configs. p_s is applied once (the original's
code applied it twice, an effective fraction of about p_s², spec §10.1); to reproduce that, add
`--config.data.labeled_fraction=<p_s squared>`. The `,smoke` option swaps in the tiny synthetic
dataset, a 1/8-width model, a batch of 2-20 items and one step at the preset's own N, b_s,
p_s (raised to 1/8 where it would keep none of the tiny set's 8 labeled tracks) and positives
(every preset's smoke form runs a step in tests/test_paper_presets.py, on 2 devices). Unknown
presets are refused.
"""

import ml_collections

from configs import mtat
from configs import sl as sl_config
from configs import ssl as ssl_config

ABLATION_STEPS = 50_000
ABLATION_VIEWS_PER_BATCH = 192  # B·N of every ablation config.
FRACTIONS = ("0.05", "0.1", "0.25", "0.5", "0.75")
THRESHOLDS = ("1", "2", "4", "6", "weighted")
VIEW_COUNTS = (2, 4, 8, 16, 32)
LABELED_SHARES = {"ssl": 0.0, "sl": 1.0, "smsl": 0.5}  # b_s of each kind of run.


def _main_setups() -> dict[str, ml_collections.ConfigDict]:
  tuneplus = mtat.get_config()
  tuneplus.model.encoder = "tuneplus"
  return {"semisl": mtat.get_config(), "ssl": ssl_config.get_config(),
          "sl": sl_config.get_config(), "tuneplus": tuneplus}


def _ablation(labeled_share: float, labeled_fraction: float = 1.0, num_views: int = 2,
              threshold: str = "1") -> ml_collections.ConfigDict:
  """The original's ablation template with one factor changed."""
  c = mtat.get_config()
  c.train.total_steps = ABLATION_STEPS
  c.data.labeled_share = labeled_share
  c.data.labeled_fraction = labeled_fraction
  c.data.num_views = num_views
  c.data.batch_size = ABLATION_VIEWS_PER_BATCH // num_views
  if labeled_share == 0.0:  # SSL: FMA only.
    c.data.labeled = ""
  if labeled_share == 1.0:  # SL: MTAT only.
    c.data.unlabeled = ""
  if threshold == "weighted":
    c.loss.positives = "weighted"
  else:
    c.loss.pos_threshold = int(threshold)
  return c


def presets() -> dict[str, ml_collections.ConfigDict]:
  """Every preset name and its config."""
  out = _main_setups()
  for f in FRACTIONS:
    out[f"ps={f}"] = _ablation(labeled_share=0.5, labeled_fraction=float(f))
    out[f"bs={f}"] = _ablation(labeled_share=float(f))
  for t in THRESHOLDS:
    out[f"sl_T={t}"] = _ablation(labeled_share=1.0, threshold=t)
    out[f"smsl_T={t}"] = _ablation(labeled_share=0.5, threshold=t)
  for kind, share in LABELED_SHARES.items():
    for n in VIEW_COUNTS:
      out[f"views_{kind}_N={n}"] = _ablation(labeled_share=share, num_views=n)
  return out


def _smoke(c: ml_collections.ConfigDict) -> None:
  """A few steps on the tiny synthetic set, keeping the preset's N, b_s, p_s and positives."""
  c.data.labeled = "synthetic_music/tiny" if c.data.labeled else ""
  c.data.unlabeled = "synthetic_music/tiny" if c.data.unlabeled else ""
  c.data.labeled_split, c.data.unlabeled_split = "train", "unlabeled"
  c.data.label_key = "instrument"
  # The tiny set has 8 labeled tracks, of which p_s keeps round(p_s·8): none for ps=0.05, so
  # the smoke form raises such a p_s to 1/8 (one track).
  if c.data.labeled_share and c.data.labeled_fraction * 8 < 0.5:
    c.data.labeled_fraction = 1 / 8
  # The smallest even batch (the tests shard it over 2 devices) of which b_s is a whole number
  # of items, at least one when b_s > 0: 2 items at b_s 0, 0.5 or 1, 4 at 0.25 and 0.75, 10 at
  # 0.1, 20 at 0.05.
  share = c.data.labeled_share
  c.data.batch_size = next(b for b in range(2, 200, 2) if share == 0 or (
      b * share >= 1 and abs(b * share - round(b * share)) < 1e-9))
  c.data.shuffle_buffer = 16
  c.model.width = 0.125
  c.train.total_steps = 1
  c.train.log_every_steps = 1
  c.train.checkpoint_every_steps = 1


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  name, *options = (arg or "").split(",")
  table = presets()
  if name not in table:
    raise ValueError(f"configs/paper.py: unknown preset {name!r}; use one of "
                     f"{', '.join(table)} (optionally followed by ',smoke').")
  unknown = [o for o in options if o != "smoke"]
  if unknown:
    raise ValueError(f"configs/paper.py: unknown option(s) {unknown}; the only option is "
                     "'smoke'.")
  c = table[name]
  if options:
    _smoke(c)
  return c
