"""ssc_jax: SemiSupCon (semi-supervised contrastive learning of musical representations) in JAX."""

__version__ = "0.1.0"


def __getattr__(name: str):
  """`ssc_jax.load_encoder` / `ssc_jax.Encoder`, imported lazily (they pull in JAX and audio I/O)."""
  if name in ("load_encoder", "Encoder"):
    from ssc_jax.inference import encoder  # pylint: disable=g-import-not-at-top
    return getattr(encoder, name)
  raise AttributeError(f"module 'ssc_jax' has no attribute {name!r}")
