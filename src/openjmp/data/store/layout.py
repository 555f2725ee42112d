"""Names and constants of the on-disk store layout (shared by writer, dataset and reader).

A store is a folder::

    DIR/
      data.0000.lmdb, data.0001.lmdb, ...   single-file LMDBs (subdir=False); keys ASCII
                                            "0".."n-1" (index within the shard) → `codec` bytes;
                                            key "length" → ASCII decimal record count
      metadata.npz                          natoms (N,) int32; split (N,) int16 code (-1 = none);
                                            element_ptr (N+1,) int64, element_z (M,) uint8,
                                            element_count (M,) uint32 (per-record element counts,
                                            CSR); shard_offsets (S+1,) int64
      metadata.json                         schema, counts, shards, split names, units,
                                            provenance, skipped — written LAST: a folder without
                                            it is not a store

Records are numbered globally in shard order. A convert in progress lives in
``DIR.tmp-convert/`` (never looks complete) and is renamed to ``DIR`` at the end.
"""

from __future__ import annotations

from pathlib import Path

SCHEMA = "openjmp-store"
SCHEMA_VERSION = 1
METADATA_JSON = "metadata.json"
METADATA_NPZ = "metadata.npz"
UNITS = {
    "positions": "Angstrom",
    "cell": "Angstrom",
    "energy": "eV",
    "forces": "eV/Angstrom",
    "stress": "eV/Angstrom^3",
}
#: LMDB map size per shard; a sparse upper bound, the file only grows as data is written
SHARD_MAP_SIZE = 1 << 36


def shard_name(i: int) -> str:
    return f"data.{i:04d}.lmdb"


def tmp_dir(out: Path) -> Path:
    return out.parent / f"{out.name}.tmp-convert"


def is_store(path: Path) -> bool:
    import json

    meta = Path(path) / METADATA_JSON
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("schema") == SCHEMA
    except (OSError, ValueError):
        return False
