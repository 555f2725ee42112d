"""Files shipped inside the package: the mini suite (``mini/``), SMILES lists, the shipped
weights. Addressed as ``asset://mini/...`` in configs and on the command line."""

from __future__ import annotations

from pathlib import Path

ASSET_SCHEME = "asset:/"


def asset_path(path) -> Path:
    """``asset://mini/x`` → the packaged file; any other path is returned unchanged (as a Path)."""
    text = str(path)
    if not text.startswith(ASSET_SCHEME):
        return Path(path)
    from importlib import resources

    return Path(str(resources.files("openjmp") / "assets" / text.split(":", 1)[1].lstrip("/")))


def portable_path(path, base) -> str:
    """How a file written into folder ``base`` should name ``path``: ``asset://...`` for a
    packaged asset, else relative to ``base`` (so that a run folder can be moved or shared and
    holds no machine's absolute paths), else (another drive) absolute."""
    import os
    from importlib import resources

    path = Path(path).resolve()
    root = Path(str(resources.files("openjmp") / "assets")).resolve()
    if path.is_relative_to(root):
        return "asset://" + path.relative_to(root).as_posix()
    try:
        return Path(os.path.relpath(path, Path(base).resolve())).as_posix()
    except ValueError:
        return str(path)


def resolve_portable(text: str, base) -> Path:
    """Inverse of `portable_path`: a path as written into a file in folder ``base``."""
    if text.startswith(ASSET_SCHEME):
        return asset_path(text)
    path = Path(text)
    return path if path.is_absolute() else Path(base) / path
