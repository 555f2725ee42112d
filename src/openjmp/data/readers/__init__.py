"""Readers for every dataset of the paper, by format name, and format auto-detection.

Entry points::

    read(path, format=None, **options) -> Reader   # iterable of ReaderItem(split, record)
    get_reader(name) -> Reader subclass
    detect_format(path) -> name

Each reader converts to eV / Å / eV/Å once, sets ``record.source`` (file, group/key, frame) and
``record.dataset``, yields ``ReaderItem(split, record)`` with the split the source defines (or
None) and counts skipped records in ``reader.skipped``. Modules are imported only when used.

=============== =========================================== ==============================
format          source                                      module
=============== =========================================== ==============================
ani1x           ANI-1x ``ani1x-release.h5``                 `ani1x`
transition1x    Transition1x ``transition1x-release.h5``    `transition1x`
oc20-lmdb       OC20/OC22 fairchem-v1 / JMP LMDB folder     `oc20_lmdb`
aselmdb         ``*.aselmdb`` (OMat24/OMol25)               `aselmdb`
qm9             QM9 ``dsgdb9nsd.xyz.tar.bz2`` or folder     `qm9`
qm9-pyg         PyG/JMP ``qm9_v3.pt``                        `qm9_pyg`
rmd17           rMD17 ``rmd17_<mol>.npz``                   `rmd17`
md22            MD22 ``md22_<mol>.npz``                     `md22`
spice           SPICE HDF5                                  `spice`
matbench        ``matbench_<task>.json.gz``                 `matbench`
qmof            QMOF ``qmof.json`` + structures             `qmof`
ase             extxyz / ASE db / traj / anything ase.io    `ase`
store           openjmp's converted store                   `store`
=============== =========================================== ==============================
"""

from __future__ import annotations

import importlib
from pathlib import Path

from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem

#: format name -> (module, class)
READERS: dict[str, tuple[str, str]] = {
    "ani1x": ("openjmp.data.readers.ani1x", "ANI1xReader"),
    "transition1x": ("openjmp.data.readers.transition1x", "Transition1xReader"),
    "oc20-lmdb": ("openjmp.data.readers.oc20_lmdb", "OC20LmdbReader"),
    "aselmdb": ("openjmp.data.readers.aselmdb", "AseLmdbReader"),
    "qm9": ("openjmp.data.readers.qm9", "QM9Reader"),
    "qm9-pyg": ("openjmp.data.readers.qm9_pyg", "QM9PygReader"),
    "rmd17": ("openjmp.data.readers.rmd17", "RMD17Reader"),
    "md22": ("openjmp.data.readers.md22", "MD22Reader"),
    "spice": ("openjmp.data.readers.spice", "SpiceReader"),
    "matbench": ("openjmp.data.readers.matbench", "MatbenchReader"),
    "qmof": ("openjmp.data.readers.qmof", "QmofReader"),
    "ase": ("openjmp.data.readers.ase", "AseReader"),
    "store": ("openjmp.data.readers.store", "StoreReader"),
}

FORMATS = tuple(READERS)


def get_reader(name: str) -> type[Reader]:
    """The reader class for format ``name``."""
    if name not in READERS:
        from openjmp.data.readers.base import DataFormatError

        raise DataFormatError(f"unknown format {name!r}; known formats: {', '.join(FORMATS)}")
    module, cls = READERS[name]
    return getattr(importlib.import_module(module), cls)


def read(path, format: str | None = None, **options) -> Reader:
    """Open ``path`` with the reader for ``format`` (detected when None); iterate the result.
    ``asset://mini/...`` names a file of the packaged mini suite."""
    from openjmp.assets import asset_path

    path = asset_path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return get_reader(format or detect_format(path))(path, **options)


def _h5_kind(path: Path) -> str:
    from openjmp.data.readers._h5 import open_h5

    with open_h5(path) as f:
        keys = list(f.keys())
        if "data" in keys and any(k in keys for k in ("train", "val", "test")):
            return "transition1x"
        if "data" in keys:
            return "transition1x"
        for key in keys[:3]:
            group = f[key]
            if not hasattr(group, "keys"):
                continue
            if "conformations" in group or "dft_total_energy" in group:
                return "spice"
            if "coordinates" in group:
                return "ani1x"
    raise DataFormatError(
        f"{path}: HDF5 layout not recognised (ANI-1x, Transition1x or SPICE); pass --format"
    )


def _lmdb_kind(path: Path) -> str:
    """aselmdb values are zlib-compressed JSON; fairchem-v1 values are pickles."""
    import zlib

    from openjmp.data.readers._lmdb import open_lmdb

    env = open_lmdb(path)
    try:
        with env.begin() as txn:
            for _key, value in txn.cursor():
                if value[:1] == b"\x80":  # pickle protocol >= 2
                    return "oc20-lmdb"
                try:
                    zlib.decompress(value)
                    return "aselmdb"
                except zlib.error:
                    break
    finally:
        env.close()
    raise DataFormatError(f"{path}: LMDB values are neither pickles nor zlib JSON; pass --format")


def _is_qm9_xyz(text: str) -> bool:
    """Whether ``text`` starts like a QM9 xyz file: an atom count, then 'gdb <i>' + 15 values."""
    lines = text.splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        return False
    header = lines[1].split()
    return len(header) == 17 and header[0] == "gdb"


def _head(path: Path, size: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(size).decode("utf-8", "replace")
    except OSError:
        return ""


def _qm9_archive(path: Path) -> bool:
    """Whether the first regular file of the tar archive ``path`` is a QM9 xyz file."""
    import tarfile

    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    return _is_qm9_xyz(tar.extractfile(member).read(4096).decode("utf-8", "replace"))
    except (tarfile.TarError, OSError, EOFError):
        return False
    return False


def detect_format(path) -> str:
    """Format name of ``path`` from its name and, where needed, a peek inside."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        from openjmp.data.store.layout import is_store

        if is_store(path):
            return "store"
        if (path / "qmof.json").exists():
            return "qmof"
        if any(path.glob("dsgdb9nsd_*.xyz")):
            return "qm9"
        if any(path.glob("*.aselmdb")):
            return "aselmdb"
        lmdbs = sorted(path.glob("*.lmdb"))
        if lmdbs:
            return _lmdb_kind(lmdbs[0])
        raise DataFormatError(f"{path}: folder layout not recognised; pass --format")
    if name.endswith(".aselmdb"):
        return "aselmdb"
    if name.endswith(".lmdb"):
        return _lmdb_kind(path)
    if name.endswith((".h5", ".hdf5")):
        return _h5_kind(path)
    if name.endswith(".npz"):
        import numpy as np

        from openjmp.data.readers._npz import open_npz

        with open_npz(path) as z:
            keys = set(z.files)
        del np
        if "nuclear_charges" in keys:
            return "rmd17"
        if {"z", "R", "E"} <= keys:
            return "md22"
        raise DataFormatError(
            f"{path}: npz keys {sorted(keys)} match neither rMD17 nor MD22; pass --format"
        )
    if name.startswith("matbench_") and name.endswith((".json", ".json.gz")):
        return "matbench"
    if name == "qmof.json":
        return "qmof"
    if name.endswith((".tar.bz2", ".tar", ".tar.gz", ".tbz2")):
        if "dsgdb9nsd" in name or _qm9_archive(path):
            return "qm9"
        raise DataFormatError(f"{path}: a tar archive whose first file is not a QM9 xyz file; "
                              f"pass --format")
    if name.endswith(".xyz") and _is_qm9_xyz(_head(path)):
        return "qm9"
    if name.endswith(".pt"):
        return "qm9-pyg"
    return "ase"


__all__ = [
    "FORMATS",
    "READERS",
    "DataFormatError",
    "Reader",
    "ReaderItem",
    "detect_format",
    "get_reader",
    "read",
]
