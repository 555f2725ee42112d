"""Checkpoints: safe reading of foreign (Lightning / JMP) files and openjmp's own model format.

* :func:`load_jmp_checkpoint` -- published JMP-S / JMP-L checkpoints (restricted unpickler, strict
  key/shape check, EMA weights by default);
* :func:`save_model` / :func:`load_model_file` -- openjmp model files (plain data, weights_only);
* :func:`load_checkpoint_file` -- any PyTorch checkpoint without executing code from it.
"""

from openjmp.checkpoints.errors import (
    CheckpointError,
    CheckpointKeyError,
    CheckpointReadError,
    UnsafeCheckpointError,
)
from openjmp.checkpoints.format import (
    ModelFile,
    load_model_file,
    save_model,
    sha256_file,
    verify_sha256,
)
from openjmp.checkpoints.jmp import JMPCheckpoint, load_jmp_checkpoint
from openjmp.checkpoints.safe_unpickle import load_checkpoint_file, to_plain_data

__all__ = [
    "CheckpointError",
    "CheckpointKeyError",
    "CheckpointReadError",
    "UnsafeCheckpointError",
    "JMPCheckpoint",
    "ModelFile",
    "load_checkpoint_file",
    "load_jmp_checkpoint",
    "load_model_file",
    "save_model",
    "sha256_file",
    "to_plain_data",
    "verify_sha256",
]
