"""Opening HDF5 files with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from openjmp.data.readers.base import DataFormatError


def open_h5(path: Path):
    """Open ``path`` read-only with h5py; a truncated or non-HDF5 file raises `DataFormatError`."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataFormatError(
            f"{path}: cannot open as HDF5 (truncated or not HDF5?): {exc}"
        ) from exc


def read_dataset(group, key: str, where: str):
    """Read a whole dataset into numpy; missing key or unreadable data → `DataFormatError`."""
    if key not in group:
        raise DataFormatError(f"{where}: missing key {key!r}")
    try:
        return group[key][()]
    except (OSError, KeyError, RuntimeError) as exc:
        raise DataFormatError(f"{where}: cannot read {key!r} (truncated file?): {exc}") from exc
