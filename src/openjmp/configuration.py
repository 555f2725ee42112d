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


# --------------------------------------------------------------------------------------------
# Shipped configs by name: ``finetune/mini/rmd17_ethanol`` = openjmp/configs/finetune/mini/rmd17_ethanol.yaml
# --------------------------------------------------------------------------------------------

#: what a config name may start with (the kind of config = the first folder)
CONFIG_KINDS = ("finetune", "pretrain", "study", "models")


def configs_root() -> Path:
    """The folder of the configs shipped inside the package."""
    from importlib import resources

    return Path(str(resources.files("openjmp") / "configs"))


def config_names(kind: str | None = None) -> list[str]:
    """Names of the shipped configs (``finetune/mini/rmd17_ethanol``...), optionally of one kind."""
    root = configs_root()
    names = sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))
    return [n for n in names if kind is None or n.split("/", 1)[0] == kind]


def config_name_of(text: str) -> str:
    """The config name a text refers to: ``configs/finetune/mini/x.yaml``,
    ``src/openjmp/configs/finetune/mini/x.yaml`` and ``finetune/mini/x`` all give
    ``finetune/mini/x``."""
    name = str(text).replace("\\", "/").strip()
    for prefix in ("src/openjmp/configs/", "openjmp/configs/", "configs/", "./"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name.endswith((".yaml", ".yml")):
        name = name.rsplit(".", 1)[0]
    return name


def resolve_config(name_or_path: str | Path, kind: str | None = None) -> Path:
    """A config file given by path or by the name of a shipped config (see :func:`config_names`).
    An existing file wins; otherwise the shipped config of that name (a name without the kind
    folder is tried with ``kind``). Raises :class:`ConfigError` naming the closest names."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"{text}: is a folder, not a config file")
    name = config_name_of(text)
    root = configs_root()
    candidates = [name] + ([f"{kind}/{name}"] if kind and not name.startswith(f"{kind}/") else [])
    for cand in candidates:
        file = root / f"{cand}.yaml"
        if file.is_file():
            return file
    import difflib

    names = config_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"{text}: no such config file or shipped config name{hint} (openjmp configs list)")


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
        path = resolve_config(path)
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    data = dict(data or {})
    for override in overrides or []:
        try:
            apply_override(data, override)
        except ConfigError:
            raise
        except (ValueError, TypeError, IndexError, AttributeError, yaml.YAMLError) as exc:
            raise ConfigError(f"--set {override}: cannot apply ({exc})") from None
    try:
        config = cls.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path is not None else cls.__name__
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"]
            if err.get("type") == "extra_forbidden":
                msg = "unknown key"
            elif "input" in err and not isinstance(err["input"], (dict, list)):
                msg = f"{msg} (got {err['input']!r})"
            lines.append(f"  {loc}: {msg}")
        raise ConfigError(f"{where}: invalid configuration\n" + "\n".join(lines)) from None
    if hasattr(config, "resolve_paths"):
        config.resolve_paths(Path(path).resolve().parent if path is not None else Path.cwd())
    return config


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
