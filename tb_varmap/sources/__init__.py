"""Readers for what a TF1 run directory holds: graphs and checkpoints.

Nothing here imports TensorFlow at import time; only checkpoint reading does, lazily.
"""
from tb_varmap.errors import BadInput


class RunError(BadInput):
    """A run directory or one of its files cannot be read; the message names it."""
