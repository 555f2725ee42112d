"""``.aselmdb`` files (fairchem v2: OMat24, OMol25, OMC25): an ASE database on a single-file LMDB.

Read directly (no ASE database machinery, so it streams): keys are ASCII row ids ``"1".."N"``
plus the reserved ``"nextid"``, ``"metadata"``, ``"deleted_ids"``; every value is
``zlib.compress(JSON)``. A row holds ASE ``AtomsRow`` fields: ``numbers``, ``positions`` (Å),
``cell`` (3×3 Å), ``pbc``, optional ``energy`` (eV), ``forces`` (eV/Å), ``stress`` (eV/Å³, Voigt
6 or 3×3), ``tags``, ``constraints`` (``FixAtoms`` → ``fixed``), ``key_value_pairs``, ``data``.
Arrays may be plain nested lists (fairchem's orjson writer) or ASE-jsonio objects
``{"__ndarray__": [shape, dtype, flat]}`` (ASE / ase-db-backends writer); both decode the same.

Numeric scalars of ``key_value_pairs`` and ``data`` (e.g. OMol25 ``charge`` and ``spin``) become
graph-level targets under their own names (units as written by the source).
Rows are read in id order (``1..nextid-1`` minus ``deleted_ids``). ``path`` may be one file or a
folder of ``*.aselmdb`` files (read in name order). Source ids: ``"<file>:<row id>"``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from openjmp.data.readers._lmdb import open_lmdb
from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem
from openjmp.data.record import AtomsRecord

RESERVED_KEYS = (b"nextid", b"metadata", b"deleted_ids")


def decode_value(raw: bytes, where: str):
    """zlib-compressed JSON (with optional ASE ``__ndarray__`` objects) → Python objects."""
    from ase.io.jsonio import object_hook

    try:
        return json.loads(zlib.decompress(raw).decode("utf-8"), object_hook=object_hook)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{where}: value is not zlib-compressed JSON: {exc}") from exc


def aselmdb_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.aselmdb") if p.is_file())
    if not files:
        raise DataFormatError(f"{path}: no *.aselmdb files in this folder")
    return files


class AseLmdbReader(Reader):
    """Args: ``split`` (name given to every record), ``dataset`` (name put into records)."""

    name = "aselmdb"
    dataset = "aselmdb"

    def __init__(self, path, *, split: str | None = None, dataset: str | None = None, **kw) -> None:
        super().__init__(path, **kw)
        self.split = split
        self.dataset_name = dataset or self.dataset

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "dataset": self.dataset_name}

    def _ids(self, txn, file: Path) -> list[int] | range:
        raw = txn.get(b"nextid")
        if raw is None:  # fall back to scanning keys
            ids = []
            for key in txn.cursor().iternext(keys=True, values=False):
                if key not in RESERVED_KEYS:
                    try:
                        ids.append(int(key))
                    except ValueError:
                        raise DataFormatError(f"{file}: unexpected key {key!r}") from None
            return sorted(ids)
        nextid = int(decode_value(raw, f"{file}:nextid"))
        deleted_raw = txn.get(b"deleted_ids")
        deleted = set(decode_value(deleted_raw, f"{file}:deleted_ids")) if deleted_raw else set()
        return [i for i in range(1, nextid) if i not in deleted] if deleted else range(1, nextid)

    def _items(self) -> Iterator[ReaderItem]:
        import lmdb

        for file in aselmdb_files(self.path):
            env = open_lmdb(file)
            try:
                with env.begin() as txn:
                    for row_id in self._ids(txn, file):
                        where = f"{file}:{row_id}"
                        try:
                            raw = txn.get(str(row_id).encode("ascii"))
                        except lmdb.Error as exc:
                            raise DataFormatError(
                                f"{where}: cannot read (truncated LMDB?): {exc}"
                            ) from exc
                        if raw is None:
                            self.bad("missing_key", f"{where}: row {row_id} missing")
                            continue
                        try:
                            record = row_to_record(decode_value(raw, where), where)
                        except DataFormatError as exc:
                            self.bad("bad_record", str(exc))
                            continue
                        record.source = f"{file.name}:{row_id}"
                        record.dataset = self.dataset_name
                        yield ReaderItem(self.split, record)
            finally:
                env.close()


def row_to_record(row: dict, where: str) -> AtomsRecord:
    """One decoded ASE-db row dict → record (no unit conversion: ASE rows are eV/Å)."""
    if not isinstance(row, dict):
        raise DataFormatError(f"{where}: row is a {type(row).__name__}, expected a JSON object")
    for key in ("numbers", "positions"):
        if key not in row:
            raise DataFormatError(f"{where}: row lacks {key!r}")
    numbers = np.asarray(row["numbers"], dtype=np.int64).reshape(-1)
    n = numbers.shape[0]
    positions = np.asarray(row["positions"], dtype=np.float64)
    if positions.shape != (n, 3):
        raise DataFormatError(f"{where}: positions have shape {positions.shape}, expected ({n}, 3)")
    cell = row.get("cell")
    cell = (
        np.zeros((3, 3))
        if cell is None
        else np.asarray(getattr(cell, "array", cell), dtype=np.float64)
    )
    if cell.shape != (3, 3):
        raise DataFormatError(f"{where}: cell has shape {cell.shape}, expected (3, 3)")
    pbc = np.asarray(row.get("pbc", [False] * 3), dtype=bool)
    fixed = None
    for constraint in row.get("constraints") or []:
        if isinstance(constraint, dict) and constraint.get("name") == "FixAtoms":
            kwargs = constraint.get("kwargs", {})
            fixed = np.zeros(n, dtype=bool) if fixed is None else fixed
            if "indices" in kwargs:
                fixed[np.asarray(kwargs["indices"], dtype=np.int64)] = True
            elif "mask" in kwargs:
                fixed |= np.asarray(kwargs["mask"], dtype=bool)
    targets = {}
    for section in ("key_value_pairs", "data"):
        for key, value in (row.get(section) or {}).items():
            if isinstance(value, bool):
                targets[key] = float(value)
            elif isinstance(value, (int, float, np.integer, np.floating)):
                targets[key] = float(value)
    tags = row.get("tags")
    return AtomsRecord(
        atomic_numbers=numbers,
        positions=positions,
        cell=cell,
        pbc=pbc,
        energy=row.get("energy"),
        forces=row.get("forces"),
        stress=row.get("stress"),
        targets=targets,
        tags=None if tags is None else np.asarray(tags),
        fixed=fixed,
    )
