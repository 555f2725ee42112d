"""Model names or paths -> model files (shared by the simulation adapters)."""

from __future__ import annotations

from pathlib import Path


def resolve_model_path(model: str | Path) -> Path:
    """A model file path, or the file of a registered pretrained name (``openjmp-mini``)."""
    p = Path(model)
    if p.exists():
        return p
    from openjmp.models.registry import resolve_pretrained_file

    return resolve_pretrained_file(str(model))
