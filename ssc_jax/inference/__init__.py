"""The inference layer: a frozen encoder from its files to embeddings.

* `pretrained`: load an exported `encoder.msgpack` or a pretraining workdir's newest
  checkpoint (`load_pretrained` → `PretrainedEncoder`).
* `audio_files`: audio files and arrays → mono float32 at the model's rate.
* `embedding`: chunking of long audio and the jitted chunk embedder (inference mode).
* `encoder`: the public `Encoder` API (`ssc_jax.load_encoder`).
* `torch_weights`: PyTorch state dicts ↔ ssc_jax variables.

It builds on the library (models, parallel, checkpoint) and never imports
`ssc_jax.evaluation`, which builds on it (tests/test_import_graph.py).
"""
