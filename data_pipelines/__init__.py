"""TFDS builders and tf.data input functions (no JAX here)."""

# Registers the built-in `synthetic_music` TFDS builder.
from data_pipelines import synthetic_music  # noqa: F401
