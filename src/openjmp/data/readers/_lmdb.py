"""Opening single-file LMDB environments read-only, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from openjmp.data.readers.base import DataFormatError


def open_lmdb(path: Path, *, readahead: bool = True):
    """Open a single-file LMDB (``subdir=False``) read-only without a lock file."""
    import lmdb

    if path.is_dir():
        raise DataFormatError(f"{path}: is a folder, expected a single-file LMDB")
    try:
        env = lmdb.open(
            str(path),
            subdir=False,
            readonly=True,
            lock=False,
            readahead=readahead,
            meminit=False,
            max_readers=512,
        )
    except lmdb.Error as exc:
        raise DataFormatError(
            f"{path}: cannot open as LMDB (truncated or not LMDB?): {exc}"
        ) from exc
    # A truncated file still opens (its meta pages are at the start), but touching a page past
    # the end of the memory map kills the process with SIGBUS: check the size up front.
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = path.stat().st_size
    if size < needed:
        env.close()
        raise DataFormatError(
            f"{path}: cannot open as LMDB: file is truncated ({size} bytes, its pages need {needed})"
        )
    return env


def lmdb_files(path: Path) -> list[Path]:
    """``path`` itself if it is a file, else the ``*.lmdb`` files in the folder sorted by name."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.lmdb") if p.is_file())
    if not files:
        raise DataFormatError(f"{path}: no *.lmdb files in this folder")
    return files
