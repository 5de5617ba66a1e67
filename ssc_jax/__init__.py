"""ssc_jax: SemiSupCon (semi-supervised contrastive learning of musical representations) in JAX."""

__version__ = "0.1.0"
