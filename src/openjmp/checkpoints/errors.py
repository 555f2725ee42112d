"""Exceptions raised while reading or writing checkpoints. Every message names the file."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message says which file and why."""


class CheckpointReadError(CheckpointError):
    """The file is missing, truncated, corrupt, or not a PyTorch checkpoint at all."""


class UnsafeCheckpointError(CheckpointError):
    """The file's pickle asks for a callable that is not plain data (it was not executed)."""


class CheckpointKeyError(CheckpointError):
    """State-dict keys, shapes or dtypes differ from what the model expects."""
