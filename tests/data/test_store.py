"""The canonical store: lossless round trip, metadata, atomicity, resume, DataLoader workers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from openjmp.data.readers import read
from openjmp.data.readers.rmd17 import RMD17Reader
from openjmp.data.record import AtomsRecord
from openjmp.data.store import StoreDataset, convert, decode_record, encode_record, is_store
from openjmp.data.store.layout import tmp_dir

RNG = np.random.default_rng(4)


def write_npz(tmp_path, n_frames=25, nan_at=None):
    """rMD17-layout file (values in kcal/mol → converted values are not float32-representable)."""
    path = tmp_path / "rmd17_benzene.npz"
    base = np.stack([np.arange(6) * 1.4, np.zeros(6), np.zeros(6)], axis=1)
    energies = RNG.normal(-1e5, 1, n_frames)
    if nan_at is not None:
        energies[nan_at] = np.nan
    np.savez(
        path,
        nuclear_charges=np.array([6, 6, 6, 1, 1, 1]),
        coords=base[None] + RNG.normal(scale=0.05, size=(n_frames, 6, 3)),
        energies=energies,
        forces=RNG.normal(0, 10, (n_frames, 6, 3)),
    )
    return path


def assert_same(a: AtomsRecord, b: AtomsRecord):
    for name in ("atomic_numbers", "positions", "cell", "pbc", "forces", "stress", "tags", "fixed"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name  # bit-equal
    assert a.energy == b.energy and a.source == b.source and a.dataset == b.dataset
    assert a.targets.keys() == b.targets.keys()
    for k in a.targets:
        assert np.array_equal(a.targets[k], b.targets[k])


def periodic_records(n=7):
    out = []
    for i in range(n):
        cell = np.array([[5.0, 0.0, 0.0], [0.7, 5.5, 0.0], [0.1, 0.3, 14.0 + i]])
        pos = RNG.uniform(0, 1, (5, 3)) @ cell
        pos[:, 0] = np.arange(5) * 1.1
        out.append(
            AtomsRecord(
                atomic_numbers=[29, 29, 8, 6, 1],
                positions=pos,
                cell=cell,
                pbc=[True, True, i % 2 == 0],
                energy=-3.0 * i + 0.1,
                forces=RNG.normal(size=(5, 3)).astype(np.float32).astype(np.float64),
                stress=RNG.normal(size=(3, 3)) * 1e-3,
                targets={"bandgap": 1.0 + i, "dos": RNG.normal(size=4)},
                tags=[0, 1, 2, 2, 2],
                fixed=[True, False, False, False, False],
                source=f"x:{i}",
                dataset="oc20",
            )
        )
    return out


def test_codec_round_trip_bit_equal():
    for rec in periodic_records(3):
        assert_same(decode_record(encode_record(rec)), rec)
    mol = AtomsRecord(
        atomic_numbers=[1, 8], positions=[[0.1 + 1e-17, 0.0, 0.0], [np.pi, 0.0, 0.0]], energy=np.e
    )
    back = decode_record(encode_record(mol))
    assert back.positions[1, 0] == np.pi and back.energy == np.e and back.forces is None


def test_convert_round_trip_metadata_and_splits(tmp_path):
    path = write_npz(tmp_path)
    out = tmp_path / "store"
    meta = convert(
        read(path, split="jmp", train_size=15, val_size=5), out, shard_size=7, progress=False
    )
    assert is_store(out) and not tmp_dir(out).exists()
    assert meta["records"] == 25 and [s["records"] for s in meta["shards"]] == [7, 7, 7, 4]
    assert meta["splits"] == {"test": 5, "train": 15, "val": 5}
    assert meta["elements"] == {"C": 75, "H": 75}
    assert meta["provenance"]["reader"]["format"] == "rmd17" and meta["units"]["energy"] == "eV"
    on_disk = json.loads((out / "metadata.json").read_text())
    assert on_disk["records"] == 25
    source = list(read(path, split="jmp", train_size=15, val_size=5))
    ds = StoreDataset(out)
    assert len(ds) == 25
    for i in (0, 6, 7, 24, 13):
        assert_same(ds[i], source[i].record)
    assert ds.natoms.tolist() == [6] * 25
    counts = ds.meta.element_counts([0, 5])
    assert (
        counts[:, 6].tolist() == [3, 3] and counts[:, 1].tolist() == [3, 3] and counts.sum() == 12
    )
    train = StoreDataset(out, split="train")
    expected = [item.record.source for item in source if item.split == "train"]
    assert [train[i].source for i in range(len(train))] == expected
    with pytest.raises(KeyError, match="no split 'validation'"):
        StoreDataset(out, split="validation")
    # the store is itself a readable source with its splits
    again = list(read(out))
    assert [s for s, _ in again] == [s for s, _ in source]


def test_periodic_records_and_dataloader_workers(tmp_path):
    from openjmp.data.readers.base import ReaderItem

    records = periodic_records()
    out = tmp_path / "oc"
    convert([ReaderItem("train", r) for r in records], out, shard_size=3, progress=False)
    ds = StoreDataset(out)
    for i, rec in enumerate(records):
        assert_same(ds[i], rec)
    counts = ds.meta.element_counts()
    for i, rec in enumerate(records):
        assert np.array_equal(counts[i], np.bincount(rec.atomic_numbers, minlength=119))
    assert np.array_equal(ds.meta.element_counts([6, 1]), counts[[6, 1]])
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=2, collate_fn=list, shuffle=False
    )
    got = [r for batch in loader for r in batch]
    assert len(got) == len(records)
    for a, b in zip(got, records):
        assert_same(a, b)


class _Interrupted(RMD17Reader):
    """Same source and description as an rMD17 reader, but Ctrl-C after ``stop`` records."""

    stop = 17

    def _items(self):
        for k, item in enumerate(super()._items()):
            if k == self.stop:
                raise KeyboardInterrupt
            yield item


def test_interrupted_convert_leaves_nothing_complete_and_resumes(tmp_path):
    path = write_npz(tmp_path)
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        convert(_Interrupted(path), out, shard_size=5, progress=False)
    tmp = tmp_dir(out)
    assert not out.exists() and tmp.is_dir() and not (tmp / "metadata.json").exists()
    assert not is_store(tmp)
    with pytest.raises(Exception, match="not a complete openjmp store"):
        StoreDataset(tmp)
    finished = tmp / "data.0001.lmdb"
    stamp = finished.stat().st_mtime_ns
    meta = convert(read(path), out, shard_size=5, progress=False)  # resume
    assert meta["records"] == 25 and not tmp.exists()
    assert (
        out / "data.0001.lmdb"
    ).stat().st_mtime_ns == stamp  # finished shard kept, not rewritten
    reference = tmp_path / "reference"
    convert(read(path), reference, shard_size=5, progress=False)
    a, b = StoreDataset(out), StoreDataset(reference)
    for i in range(25):
        assert_same(a[i], b[i])


def test_failed_convert_leaves_nothing(tmp_path):
    path = write_npz(tmp_path, nan_at=12)
    out = tmp_path / "store"
    with pytest.raises(ValueError, match=r"rmd17_benzene.npz:12: non-finite energy"):
        convert(read(path), out, shard_size=5, progress=False)
    assert not out.exists() and not tmp_dir(out).exists()
    meta = convert(read(path, skip_bad=True), out, shard_size=5, progress=False)
    assert meta["records"] == 24 and meta["skipped"] == {"invalid_structure": 1}
    with pytest.raises(FileExistsError, match="already exists"):
        convert(read(path, skip_bad=True), out, progress=False)
    meta = convert(read(path, skip_bad=True), out, shard_size=100, overwrite=True, progress=False)
    assert len(meta["shards"]) == 1 and StoreDataset(out).meta.info["records"] == 24


def test_truncated_store_shard_is_a_clear_error(tmp_path):
    path = write_npz(tmp_path)
    out = tmp_path / "store"
    convert(read(path), out, shard_size=30, progress=False)
    shard = out / "data.0000.lmdb"
    shard.write_bytes(shard.read_bytes()[:6000])
    with pytest.raises(ValueError, match="data.0000.lmdb: cannot open as LMDB: file is truncated"):
        StoreDataset(out)[3]


def test_source_failing_before_first_record_leaves_nothing(tmp_path):
    from openjmp.data.readers.base import DataFormatError

    class Broken:
        def __len__(self):
            raise DataFormatError("broken.lmdb: cannot open as LMDB: file is truncated")

        def __iter__(self):
            return iter(())

    out = tmp_path / "store"
    with pytest.raises(DataFormatError, match="truncated"):
        convert(Broken(), out, progress=False)
    assert not out.exists() and not tmp_dir(out).exists()
    with pytest.raises(DataFormatError, match="no records were read"):
        convert([], out, progress=False)
    assert not out.exists() and not tmp_dir(out).exists()
