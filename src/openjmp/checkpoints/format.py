"""openjmp's own model file: config + weights (+ EMA) + normalisation + heads, plain data only.

The file is ``torch.save`` of one dict made only of tensors, numbers, strings, booleans, None,
lists, tuples and dicts, so it loads with ``torch.load(weights_only=True)`` -- no pickled classes,
no code. Layout (``format_version`` 1)::

    {
      "format": "openjmp.model",  "format_version": 1,
      "openjmp_version": str, "torch_version": str,
      "model_config": dict,          # e.g. {"backbone": {...GemNetOCConfig...}, "num_pretrain_tasks": 4, ...}
      "heads": dict,                 # head names / kinds / task names
      "normalization": dict,         # per target: mean, std, linear references (plain numbers or tensors)
      "state_dict": {name: Tensor},  # the model's weights (CPU)
      "ema_state_dict": {name: Tensor} | None,
      "extra": dict,                 # anything else plain (training step, source checkpoint, ...)
    }

Files are written to a temporary file in the same folder and moved into place with
``os.replace``: a reader never sees half a file. :func:`sha256_file` gives the digest that model
registries pin.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openjmp.checkpoints.errors import CheckpointError, CheckpointReadError, UnsafeCheckpointError

FORMAT_NAME = "openjmp.model"
FORMAT_VERSION = 1

_PLAIN_SCALARS = (str, int, float, bool, type(None))


def _openjmp_version() -> str:
    from openjmp import __version__

    return __version__


def to_plain(value: Any, where: str = "value") -> Any:
    """A copy of ``value`` made only of plain data, or TypeError naming the offending path
    (``normalization.energy.file``). numpy scalars become Python numbers and numpy arrays
    tensors; subclasses of dict/list/str/... are refused (they would need code to unpickle)."""
    if type(value) in _PLAIN_SCALARS:
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.array(value))
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter):
            raise TypeError(f"{where}: tensor subclass {type(value).__name__} is not plain data")
        if value.is_meta:
            raise TypeError(f"{where}: meta tensor has no data to save")
        return value.detach().to("cpu")
    if type(value) is dict:
        out = {}
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where}: key {key!r} is not a string or integer")
            out[key] = to_plain(item, f"{where}.{key}")
        return out
    if type(value) in (list, tuple):
        return type(value)(to_plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    raise TypeError(f"{where}: {type(value).__name__} is not plain data (tensors, numbers, "
                    "strings, lists, dicts)")


def _cpu_tensors(state_dict: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{where}.{key}: {type(value).__name__} is not a tensor")
        t = value.detach().to("cpu")
        if type(t) is not torch.Tensor:
            t = t.as_subclass(torch.Tensor)
        # a view would drag its whole base storage into the file
        if t.untyped_storage().nbytes() != t.numel() * t.element_size() or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)
        out[key] = t
    return out


def _as_dict(config: Any, where: str) -> dict:
    if hasattr(config, "model_dump"):  # pydantic config
        config = config.model_dump()
    if not isinstance(config, dict):
        raise TypeError(f"{where}: expected a dict, got {type(config).__name__}")
    return config


def public_file_mode() -> int:
    """0666 less the process umask (0644 with the usual 022), as ``open`` would create a file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomically(path: str | Path, payload: Any) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, public_file_mode())  # mkstemp makes 0600; a model file is for sharing
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`CheckpointError` when the file's SHA-256 differs from ``expected``."""
    actual = sha256_file(path)
    if actual.lower() != expected.lower():
        raise CheckpointError(
            f"{path}: SHA-256 is {actual}, expected {expected} (wrong or corrupted file)"
        )


def save_model(
    path: str | Path,
    model_config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    *,
    normalization: Mapping[str, Any],
    heads: Mapping[str, Any],
    ema_state_dict: Mapping[str, torch.Tensor] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Write an openjmp model file atomically; returns its SHA-256.

    ``model_config`` (a dict, or a pydantic model which is dumped), ``heads``, ``normalization``
    and ``extra`` must be plain data; tensors are moved to CPU (views are copied compactly).
    """
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "openjmp_version": _openjmp_version(),
        "torch_version": str(torch.__version__),
        "model_config": to_plain(_as_dict(model_config, "model_config"), "model_config"),
        "heads": to_plain(_as_dict(dict(heads), "heads"), "heads"),
        "normalization": to_plain(_as_dict(dict(normalization), "normalization"), "normalization"),
        "state_dict": _cpu_tensors(state_dict, "state_dict"),
        "ema_state_dict": None if ema_state_dict is None else _cpu_tensors(ema_state_dict, "ema_state_dict"),
        "extra": to_plain(dict(extra or {}), "extra"),
    }
    if payload["ema_state_dict"] is not None:
        missing = sorted(set(payload["ema_state_dict"]) - set(payload["state_dict"]))
        if missing:
            raise ValueError(f"ema_state_dict has keys the state_dict lacks: {missing[:10]}")
    write_atomically(path, payload)
    return sha256_file(path)


@dataclass
class ModelFile:
    """Contents of an openjmp model file (see the module docstring)."""

    path: Path
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    normalization: dict[str, Any]
    heads: dict[str, Any]
    ema_state_dict: dict[str, torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    openjmp_version: str = ""
    torch_version: str = ""

    def weights(self, use_ema: bool = True) -> dict[str, torch.Tensor]:
        """The state dict with EMA values substituted when present and ``use_ema``."""
        out = dict(self.state_dict)
        if use_ema and self.ema_state_dict:
            out.update(self.ema_state_dict)
        return out


def load_model_file(path: str | Path, map_location: Any = "cpu") -> ModelFile:
    """Read an openjmp model file with ``torch.load(weights_only=True)`` and validate it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointReadError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "global" in text.lower() or "weights_only" in text:
            raise UnsafeCheckpointError(
                f"{path}: not a plain-data openjmp model file (its pickle needs code: {text.splitlines()[0]}). "
                "Published JMP checkpoints are read with openjmp.checkpoints.load_jmp_checkpoint."
            ) from None
        raise CheckpointReadError(f"{path}: cannot read the model file ({text})") from exc
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CheckpointReadError(
            f"{path}: cannot read the model file: {exc} (truncated or not a PyTorch file)"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        hint = ""
        if isinstance(payload, dict) and "state_dict" in payload and "optimizer_states" in payload:
            hint = " It looks like a Lightning checkpoint: use openjmp.checkpoints.load_jmp_checkpoint."
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not an openjmp model file (format: {found!r}).{hint}")
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer openjmp (format version {version}; this one reads up to "
            f"{FORMAT_VERSION}); upgrade openjmp"
        )
    for key, kind in (("model_config", dict), ("state_dict", dict), ("normalization", dict),
                      ("heads", dict), ("extra", dict)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
    for name, sd in (("state_dict", payload["state_dict"]), ("ema_state_dict", payload.get("ema_state_dict") or {})):
        bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{path}: {name} entries that are not tensors: {bad[:10]}")
    return ModelFile(
        path=path,
        model_config=payload["model_config"],
        state_dict=payload["state_dict"],
        normalization=payload["normalization"],
        heads=payload["heads"],
        ema_state_dict=payload.get("ema_state_dict"),
        extra=payload["extra"],
        format_version=version,
        openjmp_version=str(payload.get("openjmp_version", "")),
        torch_version=str(payload.get("torch_version", "")),
    )
