"""Typed configuration helpers: YAML loading, dotted overrides, path resolution.

Every config is a pydantic model with ``extra="forbid"`` (unknown keys are errors) and is
validated before any work starts. ``--set a.b.c=VALUE`` overrides parse VALUE as YAML (so
``1e-4``, ``true``, ``[1, 2]`` work).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the file and the key."""


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``"a.b.c=value"`` to nested dicts/lists in place (list items by integer index)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key.path=value")
    key, raw = override.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    parts = key.strip().split(".")
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None, data: dict | None = None) -> T:
    """Read YAML ``path`` (or take ``data``), apply overrides, validate into ``cls``."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    data = dict(data or {})
    for override in overrides or []:
        apply_override(data, override)
    try:
        config = cls.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path is not None else cls.__name__
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError(f"{where}: invalid configuration\n" + "\n".join(lines)) from None
    if hasattr(config, "resolve_paths"):
        config.resolve_paths(Path(path).resolve().parent if path is not None else Path.cwd())
    return config


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
