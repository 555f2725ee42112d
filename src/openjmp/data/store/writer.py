"""``convert``: stream a reader into a store (see `layout` for the files).

Atomic: everything is written into ``DIR.tmp-convert/``; ``metadata.json`` is written last and
the folder is renamed to ``DIR`` only then. A failed convert (bad input, any exception)
removes the temporary folder; an interrupted one (Ctrl-C, kill) leaves it, without metadata.

Resumable: each finished shard gets a sidecar ``data.NNNN.done.npz`` (its per-record metadata;
written after the shard is synced). Running the same convert again (same reader description,
shard size and skip_bad) keeps finished shards, re-reads the source past the records they hold
(readers are deterministic) and continues with the next shard. A different fingerprint starts
over.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem
from openjmp.data.store.codec import encode_record
from openjmp.data.store.layout import (
    METADATA_JSON,
    METADATA_NPZ,
    SCHEMA,
    SCHEMA_VERSION,
    SHARD_MAP_SIZE,
    UNITS,
    is_store,
    shard_name,
    tmp_dir,
)

PROGRESS_JSON = "progress.json"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _save_npz_atomic(path: Path, **arrays) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write_atomic(path, buf.getvalue())


class _Shard:
    """Collects one shard: LMDB writes in batched transactions plus per-record metadata."""

    def __init__(self, path: Path, commit_every: int = 1000) -> None:
        import lmdb

        for leftover in (path, path.with_name(path.name + "-lock")):
            if leftover.exists():
                leftover.unlink()
        self.path = path
        self.env = lmdb.open(
            str(path), subdir=False, map_size=SHARD_MAP_SIZE, lock=False, meminit=False, sync=False
        )
        self.txn = self.env.begin(write=True)
        self.commit_every = commit_every
        self.count = 0
        self.natoms: list[int] = []
        self.splits: list[str] = []
        self.elem_z: list[np.ndarray] = []
        self.elem_n: list[np.ndarray] = []

    def add(self, split: str | None, record) -> None:
        self.txn.put(str(self.count).encode("ascii"), encode_record(record))
        self.count += 1
        self.natoms.append(record.natoms)
        self.splits.append("" if split is None else str(split))
        z, c = np.unique(record.atomic_numbers, return_counts=True)
        self.elem_z.append(z.astype(np.uint8))
        self.elem_n.append(c.astype(np.uint32))
        if self.count % self.commit_every == 0:
            self.txn.commit()
            self.txn = self.env.begin(write=True)

    def finish(self, sidecar: Path) -> int:
        self.txn.put(b"length", str(self.count).encode("ascii"))
        self.txn.commit()
        self.env.sync(True)
        self.env.close()
        lens = np.array([len(z) for z in self.elem_z], dtype=np.int64)
        _save_npz_atomic(
            sidecar,
            natoms=np.asarray(self.natoms, dtype=np.int32),
            split=np.asarray(self.splits, dtype=np.str_),
            element_len=lens,
            element_z=np.concatenate(self.elem_z) if self.elem_z else np.zeros(0, np.uint8),
            element_count=np.concatenate(self.elem_n) if self.elem_n else np.zeros(0, np.uint32),
        )
        return self.count

    def abort(self) -> None:
        try:
            self.txn.abort()
            self.env.close()
        except Exception:  # noqa: BLE001 - best effort cleanup on the error path
            pass


def _sidecar(tmp: Path, i: int) -> Path:
    return tmp / f"data.{i:04d}.done.npz"


def _finished_shards(tmp: Path) -> list[int]:
    """Record counts of the consecutive finished shards 0, 1, ... in ``tmp``."""
    counts = []
    i = 0
    while _sidecar(tmp, i).is_file() and (tmp / shard_name(i)).is_file():
        with np.load(_sidecar(tmp, i)) as z:
            counts.append(int(z["natoms"].shape[0]))
        i += 1
    return counts


def _progress_bar(enabled: bool, total: int | None):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text("-- records/s" if speed is None else f"{speed:,.0f} records/s")

    columns = [
        TextColumn("[bold]convert"),
        BarColumn() if total else TextColumn(""),
        MofNCompleteColumn() if total else TextColumn("{task.completed:,} records"),
        RateColumn(),
        TimeElapsedColumn(),
    ]
    return Progress(*columns, disable=not enabled, transient=False)


def convert(
    source: Reader | Iterable[ReaderItem],
    out,
    *,
    shard_size: int = 10_000,
    overwrite: bool = False,
    progress: bool = True,
    describe: dict | None = None,
    target_units: dict | None = None,
) -> dict:
    """Write ``source`` (a reader, or any iterable of `ReaderItem`) into the store ``out``.

    Returns the metadata dict written to ``metadata.json``. Raises `FileExistsError` when
    ``out`` exists (unless ``overwrite``), and re-raises reader errors after removing the
    temporary folder.
    """
    out = Path(out)
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    if out.exists() and not overwrite:
        what = "a store" if is_store(out) else "a file or folder"
        raise FileExistsError(f"{out}: already exists ({what}); pass overwrite=True / --overwrite")
    desc = (
        describe
        if describe is not None
        else (source.describe() if isinstance(source, Reader) else {})
    )
    units = (
        target_units
        if target_units is not None
        else (source.target_units() if isinstance(source, Reader) else {})
    )
    from openjmp import __version__

    fingerprint = {
        "reader": desc,
        "shard_size": shard_size,
        "skip_bad": getattr(source, "skip_bad", None),
        "schema_version": SCHEMA_VERSION,
    }
    tmp = tmp_dir(out)
    done: list[int] = []
    if tmp.exists():
        try:
            previous = json.loads((tmp / PROGRESS_JSON).read_text())
        except (OSError, ValueError):
            previous = None
        if previous == json.loads(json.dumps(fingerprint)):
            done = _finished_shards(tmp)
        else:
            shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    _write_atomic(tmp / PROGRESS_JSON, json.dumps(fingerprint).encode())
    # drop anything past the finished shards (a partly written shard, stale sidecars)
    for p in tmp.iterdir():
        if p.name.startswith("data.") and not any(
            p.name.startswith(f"data.{i:04d}.") for i in range(len(done))
        ):
            p.unlink()

    n_resumed = sum(done)
    shard: _Shard | None = None
    shard_index = len(done)
    t0 = time.perf_counter()
    try:
        total = len(source) if hasattr(source, "__len__") else None
        with _progress_bar(progress, total) as bar:
            task = bar.add_task("convert", total=total, completed=n_resumed)
            for position, (split, record) in enumerate(source):
                if position < n_resumed:
                    continue
                if shard is None:
                    shard = _Shard(tmp / shard_name(shard_index))
                shard.add(split, record)
                bar.advance(task)
                if shard.count >= shard_size:
                    done.append(shard.finish(_sidecar(tmp, shard_index)))
                    shard, shard_index = None, shard_index + 1
            if shard is not None:
                done.append(shard.finish(_sidecar(tmp, shard_index)))
                shard = None
        if sum(done) == 0:
            raise DataFormatError(f"{desc.get('path', 'source')}: no records were read")
        metadata = _finalise(
            tmp, done, desc, units, dict(getattr(source, "skipped", {})), __version__
        )
    except KeyboardInterrupt:
        if shard is not None:
            shard.abort()
        raise
    except BaseException:
        if shard is not None:
            shard.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():  # overwrite: move the old store aside first, then swap
        trash = out.parent / f"{out.name}.old-{os.getpid()}"
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True) if trash.is_dir() else trash.unlink()
    else:
        os.replace(tmp, out)
    metadata["seconds"] = time.perf_counter() - t0
    return metadata


def _finalise(
    tmp: Path, counts: list[int], desc: dict, target_units: dict, skipped: dict, version: str
) -> dict:
    from ase.data import chemical_symbols

    natoms, splits, elen, ez, ec = [], [], [], [], []
    for i in range(len(counts)):
        with np.load(_sidecar(tmp, i)) as z:
            natoms.append(z["natoms"])
            splits.append(z["split"])
            elen.append(z["element_len"])
            ez.append(z["element_z"])
            ec.append(z["element_count"])
    natoms_a = np.concatenate(natoms)
    split_str = np.concatenate(splits)
    names = sorted({s for s in split_str.tolist() if s})
    code = {name: k for k, name in enumerate(names)}
    split_codes = np.array([code.get(s, -1) for s in split_str.tolist()], dtype=np.int16)
    element_ptr = np.zeros(natoms_a.shape[0] + 1, dtype=np.int64)
    element_ptr[1:] = np.cumsum(np.concatenate(elen))
    element_z = np.concatenate(ez)
    element_count = np.concatenate(ec)
    shard_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    shard_offsets[1:] = np.cumsum(counts)
    _save_npz_atomic(
        tmp / METADATA_NPZ,
        natoms=natoms_a,
        split=split_codes,
        element_ptr=element_ptr,
        element_z=element_z,
        element_count=element_count,
        shard_offsets=shard_offsets,
    )
    elements = np.bincount(element_z.astype(np.int64), weights=element_count, minlength=1)
    for i in range(len(counts)):
        _sidecar(tmp, i).unlink()
    (tmp / PROGRESS_JSON).unlink()
    metadata = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "records": int(natoms_a.shape[0]),
        "atoms": int(natoms_a.sum()),
        "elements": {chemical_symbols[z]: int(c) for z, c in enumerate(elements) if c},
        "shards": [{"file": shard_name(i), "records": c} for i, c in enumerate(counts)],
        "split_names": names,
        "splits": {name: int((split_codes == k).sum()) for name, k in code.items()},
        "unassigned": int((split_codes == -1).sum()),
        "units": UNITS,
        "target_units": target_units,
        "skipped": skipped,
        "provenance": {
            "reader": desc,
            "openjmp_version": version,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    _write_atomic(tmp / METADATA_JSON, json.dumps(metadata, indent=2).encode())
    return metadata
