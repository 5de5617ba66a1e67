"""Inference-side helpers: reading and writing weights of other frameworks."""
