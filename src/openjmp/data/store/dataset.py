"""`StoreDataset`: random access to a converted store from any number of DataLoader workers.

LMDB environments are opened lazily, once per process (the pid is checked), read-only and
without locks, so a dataset object can be created in the main process and pickled or forked
into workers safely.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from openjmp.data.readers.base import DataFormatError
from openjmp.data.record import AtomsRecord
from openjmp.data.store.codec import decode_record
from openjmp.data.store.layout import METADATA_JSON, METADATA_NPZ, SCHEMA, SCHEMA_VERSION


class StoreMetadata:
    """``metadata.json`` + ``metadata.npz`` of a store (see `layout`)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        meta_path = self.path / METADATA_JSON
        if not meta_path.is_file():
            hint = " (an unfinished convert?)" if self.path.name.endswith(".tmp-convert") else ""
            raise DataFormatError(
                f"{self.path}: not a complete openjmp store: no {METADATA_JSON}{hint}"
            )
        self.info = json.loads(meta_path.read_text())
        if self.info.get("schema") != SCHEMA:
            raise DataFormatError(f"{meta_path}: not an openjmp store metadata file")
        if self.info.get("schema_version") != SCHEMA_VERSION:
            raise DataFormatError(
                f"{meta_path}: schema version {self.info.get('schema_version')} unsupported (want {SCHEMA_VERSION})"
            )
        with np.load(self.path / METADATA_NPZ) as z:
            self.natoms = z["natoms"]
            self.split = z["split"]
            self.element_ptr = z["element_ptr"]
            self.element_z = z["element_z"]
            self.element_count = z["element_count"]
            self.shard_offsets = z["shard_offsets"]
        self.split_names: list[str] = list(self.info["split_names"])
        self.shard_files = [s["file"] for s in self.info["shards"]]

    def __len__(self) -> int:
        return int(self.natoms.shape[0])

    def split_name(self, index: int) -> str | None:
        code = int(self.split[index])
        return None if code < 0 else self.split_names[code]

    def indices(self, split: str | None = None) -> np.ndarray:
        """Global record indices of ``split`` (all records when None)."""
        if split is None:
            return np.arange(len(self))
        if split not in self.split_names:
            raise KeyError(f"{self.path}: no split {split!r}; splits: {self.split_names}")
        return np.flatnonzero(self.split == self.split_names.index(split))

    def element_counts(self, indices=None, max_z: int = 118) -> np.ndarray:
        """Dense element counts (len(indices), max_z + 1) int64, column = atomic number."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        starts = self.element_ptr[idx]
        lengths = self.element_ptr[idx + 1] - starts
        rows = np.repeat(np.arange(idx.shape[0]), lengths)
        # positions of each record's CSR entries: start + 0..length-1
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        flat = np.repeat(starts, lengths) + within
        out = np.zeros((idx.shape[0], max_z + 1), dtype=np.int64)
        out[rows, self.element_z[flat].astype(np.int64)] = self.element_count[flat]
        return out


#: read-only LMDB environments of this process, keyed by (pid, device, inode): py-lmdb refuses
#: to open one file twice per process, and several datasets (train/val) may share shards.
_ENVS: dict[tuple[int, int, int], object] = {}


def shared_env(path: Path):
    """The process-wide read-only environment of ``path`` (opened on first use)."""
    from openjmp.data.readers._lmdb import open_lmdb

    st = path.stat()
    key = (os.getpid(), st.st_dev, st.st_ino)
    env = _ENVS.get(key)
    if env is None:
        # A forked worker inherits the parent's handles (unusable across fork, and py-lmdb would
        # refuse a second open of the file): close the inherited copies first.
        for stale in [k for k in _ENVS if k[0] != key[0]]:
            _ENVS.pop(stale).close()
        env = open_lmdb(path, readahead=False)
        _ENVS[key] = env
    return env


class StoreDataset(Dataset):
    """Records of a store (optionally one split), as `AtomsRecord` (or ``transform(record)``).

    Args:
        path: store folder.
        split: keep only this split.
        transform: applied to each record in ``__getitem__``.
        indices: global record indices to expose instead of a split (any order, repeats allowed).
        metadata: the store's already loaded `StoreMetadata` (shared by several datasets).
    """

    def __init__(self, path, split: str | None = None, transform=None, indices=None,
                 metadata: StoreMetadata | None = None) -> None:
        self.path = Path(path)
        self.meta = metadata if metadata is not None else StoreMetadata(self.path)
        self.split = split
        if indices is not None:
            if split is not None:
                raise ValueError("give split or indices, not both")
            self.indices = np.asarray(indices, dtype=np.int64)
            if self.indices.size and not (0 <= self.indices.min() and self.indices.max() < len(self.meta)):
                raise IndexError(f"{self.path}: indices outside 0..{len(self.meta) - 1}")
        else:
            self.indices = self.meta.indices(split)
        self.transform = transform
        self._envs: list | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def natoms(self) -> np.ndarray:
        """Atoms per record of this dataset (for atom-balanced batching), (len,) int32."""
        return self.meta.natoms[self.indices]

    def _env(self, shard: int):
        if self._envs is None or self._pid != os.getpid():
            self._envs = [None] * len(self.meta.shard_files)
            self._pid = os.getpid()
        env = self._envs[shard]
        if env is None:
            env = shared_env(self.path / self.meta.shard_files[shard])
            self._envs[shard] = env
        return env

    def get_raw(self, global_index: int) -> AtomsRecord:
        shard = int(np.searchsorted(self.meta.shard_offsets, global_index, side="right") - 1)
        local = global_index - int(self.meta.shard_offsets[shard])
        with self._env(shard).begin(buffers=False) as txn:
            data = txn.get(str(local).encode("ascii"))
        where = f"{self.path / self.meta.shard_files[shard]}:{local}"
        if data is None:
            raise DataFormatError(f"{where}: record missing (damaged store?)")
        return decode_record(data, where)

    def __getitem__(self, index: int):
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} records")
        record = self.get_raw(int(self.indices[index]))
        return self.transform(record) if self.transform is not None else record

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_envs"], state["_pid"] = None, None  # LMDB handles never cross processes
        return state
