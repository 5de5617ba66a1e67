"""Facts every layer shares, defined once: the audio rate, the view length, the label kinds.

This module imports nothing, so `data_pipelines` (no JAX), the library, the inference layer,
evaluation and bench scripts can all read it; it is their one home. Configs (plain data) keep
their own literal values: `configs/common.py` sets `data.sample_rate` and `data.view_length`
to these numbers, and a config may choose others.

* `SAMPLE_RATE`: Hz of every prepared dataset's PCM and of the SemiSupCon encoder's input
  (spec §4.1); also the fallback for an export written before model cards recorded it.
* `VIEW_LENGTH`: T, samples per view in pretraining (2.7 s at 22050 Hz, spec §4.2): the
  default chunk length for embeddings and the default shortest file a dataset keeps.
* Label kinds: how a dataset's label feature is read. `MULTICLASS` one class per track
  (ClassLabel); `MULTILABEL` a multi-hot vector; `REGRESSION` real-valued targets.
"""

SAMPLE_RATE = 22050
VIEW_LENGTH = 59535  # int(2.7 s * 22050 Hz).

MULTICLASS, MULTILABEL, REGRESSION = "multiclass", "multilabel", "regression"
LABEL_KINDS = (MULTICLASS, MULTILABEL, REGRESSION)
