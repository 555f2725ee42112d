"""OC20/OC22 fairchem-v1 LMDB and aselmdb readers on small files in the real layouts."""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
import zlib

import lmdb
import numpy as np
import pytest
import torch

from openjmp.data.readers import DataFormatError, detect_format, read

RNG = np.random.default_rng(1)


# ----------------------------------------------------------------------------- fake PyG classes
@pytest.fixture
def fake_pyg():
    """Install stand-in ``torch_geometric.data`` modules so that pickles name the real class
    paths (``torch_geometric.data.data.Data``), then remove them before anything is read."""
    names = [
        "torch_geometric",
        "torch_geometric.data",
        "torch_geometric.data.data",
        "torch_geometric.data.storage",
    ]
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}

    class Data1:  # PyG 1.x: attributes live in __dict__
        def __init__(self, **kw):
            self.__dict__.update(kw)
            self.__num_nodes__ = None

    class GlobalStorage:  # PyG 2.x storage: _mapping + back-reference to the Data object
        def __getstate__(self):
            return {"_mapping": self._mapping, "_parent": self._parent_obj}

    class Data2:
        def __init__(self, **kw):
            store = GlobalStorage()
            store._mapping = dict(kw)
            store._parent_obj = self
            self.__dict__["_store"] = store

    for cls, mod, name in (
        (Data1, "torch_geometric.data.data", "Data"),
        (GlobalStorage, "torch_geometric.data.storage", "GlobalStorage"),
    ):
        cls.__module__, cls.__qualname__, cls.__name__ = mod, name, name
        setattr(mods[mod], name, cls)
    sys.modules.update(mods)

    def dumps(version: int, **attrs) -> bytes:
        if version == 1:
            return pickle.dumps(Data1(**attrs), protocol=-1)
        mods["torch_geometric.data.data"].Data = Data2
        Data2.__module__, Data2.__qualname__, Data2.__name__ = (
            "torch_geometric.data.data",
            "Data",
            "Data",
        )
        try:
            return pickle.dumps(Data2(**attrs), protocol=-1)
        finally:
            mods["torch_geometric.data.data"].Data = Data1

    yield dumps
    for n, m in saved.items():
        if m is None:
            sys.modules.pop(n, None)
        else:
            sys.modules[n] = m


def _slab(n=6):
    cell = np.diag([6.0, 6.0, 20.0])
    frac = RNG.uniform(0.05, 0.95, (n, 3)) * [1, 1, 0.3]
    pos = frac @ cell
    pos[:, 0] = np.arange(n) * 1.0  # keep atoms apart
    return pos, cell


def write_lmdb(path, values: list[bytes], length: bool = True):
    env = lmdb.open(str(path), subdir=False, map_size=1 << 26, lock=False)
    with env.begin(write=True) as txn:
        for i, v in enumerate(values):
            txn.put(str(i).encode(), v)
        if length:
            txn.put(b"length", pickle.dumps(len(values), protocol=-1))
    env.sync()
    env.close()


def oc20_old(dumps, sid, fid, n=6):
    pos, cell = _slab(n)
    return dict(
        pos=torch.tensor(pos, dtype=torch.float32),
        cell=torch.tensor(cell[None], dtype=torch.float32),
        atomic_numbers=torch.tensor(RNG.choice([1, 6, 8, 29], n), dtype=torch.float32),
        natoms=n,
        tags=torch.tensor([0, 0, 1, 1, 2, 2][:n], dtype=torch.int64),
        fixed=torch.tensor([1, 1, 0, 0, 0, 0][:n], dtype=torch.float32),
        y=float(RNG.normal()),
        force=torch.tensor(RNG.normal(size=(n, 3)), dtype=torch.float32),
        sid=sid,
        fid=fid,
    )


def test_oc20_both_generations_and_pyg_layouts(tmp_path, fake_pyg):
    folder = tmp_path / "s2ef"
    folder.mkdir()
    old = [oc20_old(fake_pyg, sid=10 + i, fid=i) for i in range(3)]
    new = []
    for i in range(2):
        pos, cell = _slab()
        new.append(
            dict(
                pos=torch.tensor(pos),
                cell=torch.tensor(cell[None]),
                atomic_numbers=torch.tensor([29, 29, 29, 8, 6, 1], dtype=torch.uint8),
                natoms=torch.tensor([6]),
                tags=torch.tensor([0, 1, 1, 2, 2, 2]),
                fixed=torch.tensor([1, 0, 0, 0, 0, 0], dtype=torch.int32),
                energy=torch.tensor([-12.5 - i]),
                forces=torch.tensor(RNG.normal(size=(6, 3))),
                stress=torch.tensor(np.eye(3)[None] * 0.01),
                sid=20 + i,
                fid=0,
            )
        )
    write_lmdb(folder / "data.0000.lmdb", [fake_pyg(1, **a) for a in old], length=True)
    write_lmdb(folder / "data.0001.lmdb", [fake_pyg(2, **a) for a in new], length=False)
    for name in list(sys.modules):  # reading must not need (or use) torch_geometric
        if name.startswith("torch_geometric"):
            del sys.modules[name]
    assert detect_format(folder) == "oc20-lmdb"
    items = list(read(folder, split="train"))
    assert len(items) == 5 and all(s == "train" for s, _ in items)
    r0 = items[0].record
    assert r0.source == "data.0000.lmdb:0/random10/frame0" and r0.dataset == "oc20"
    np.testing.assert_array_equal(r0.positions, old[0]["pos"].numpy().astype(np.float64))
    np.testing.assert_array_equal(r0.cell, old[0]["cell"].numpy()[0].astype(np.float64))
    np.testing.assert_array_equal(
        r0.atomic_numbers, old[0]["atomic_numbers"].numpy().astype(np.int64)
    )
    assert r0.energy == old[0]["y"]
    np.testing.assert_array_equal(r0.forces, old[0]["force"].numpy().astype(np.float64))
    assert r0.fixed.tolist() == [True, True, False, False, False, False]
    assert r0.tags.tolist() == [0, 0, 1, 1, 2, 2] and r0.pbc.all()
    r3 = items[3].record
    assert r3.source == "data.0001.lmdb:0/random20/frame0"
    assert r3.energy == -12.5
    np.testing.assert_array_equal(r3.forces, new[0]["forces"].numpy())
    np.testing.assert_array_equal(r3.stress, np.eye(3) * 0.01)
    assert r3.fixed.tolist() == [True] + [False] * 5
    assert r3.atomic_numbers.tolist() == [29, 29, 29, 8, 6, 1]


def test_oc22_total_energy_and_oc20_reference(tmp_path, fake_pyg):
    folder = tmp_path / "mixed"
    folder.mkdir()
    a = oc20_old(fake_pyg, sid=7, fid=3)
    b = {**oc20_old(fake_pyg, sid=8, fid=0), "oc22": 1}
    write_lmdb(folder / "data.0000.lmdb", [fake_pyg(1, **a), fake_pyg(1, **b)])
    ref = tmp_path / "oc20_ref.pkl"
    ref.write_bytes(pickle.dumps({"random7": -100.25, "random8": 999.0}))
    as_stored = [r for _, r in read(folder)]
    assert [r.dataset for r in as_stored] == ["oc20", "oc22"]
    total = [r for _, r in read(folder, total_energy=True, oc20_ref=str(ref))]
    assert total[0].energy == a["y"] + -100.25  # adsorption + reference = total
    assert total[1].energy == b["y"]  # OC22 y is already total: untouched
    with pytest.raises(ValueError, match="needs oc20_ref"):
        read(folder, total_energy=True)


def test_is2re_targets(tmp_path, fake_pyg):
    pos, cell = _slab()
    attrs = dict(
        pos=torch.tensor(pos),
        cell=torch.tensor(cell[None]),
        atomic_numbers=torch.tensor([1.0, 6, 8, 29, 29, 29]),
        natoms=6,
        y_init=1.5,
        y_relaxed=-0.75,
        sid=3,
    )
    write_lmdb(tmp_path / "data.lmdb", [fake_pyg(2, **attrs)])
    (rec,) = [r for _, r in read(tmp_path / "data.lmdb", "oc20-lmdb")]
    assert rec.energy is None and rec.targets == {"y_init": 1.5, "y_relaxed": -0.75}


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_outside_allow_list_is_refused_and_never_runs(tmp_path, fake_pyg):
    marker = tmp_path / "pwned"
    good = fake_pyg(1, **oc20_old(fake_pyg, 1, 0))
    evil = pickle.dumps({"pos": _Evil(marker)}, protocol=-1)
    write_lmdb(tmp_path / "data.0000.lmdb", [good, evil])
    with pytest.raises(
        DataFormatError,
        match=r"data.0000.lmdb:1: .*refusing to unpickle global (posix|os|nt)\.system",
    ):
        list(read(tmp_path, "oc20-lmdb"))
    assert not marker.exists()
    reader = read(tmp_path, "oc20-lmdb", skip_bad=True)
    assert len(list(reader)) == 1 and reader.skipped == {"bad_record": 1}
    assert not marker.exists()
    # builtins.eval is refused too
    evil2 = pickle.dumps(types.SimpleNamespace(x=1), protocol=-1)
    write_lmdb(tmp_path / "data.0000.lmdb", [evil2])
    with pytest.raises(DataFormatError, match="types.SimpleNamespace"):
        list(read(tmp_path, "oc20-lmdb"))


def test_oc20_missing_key_and_truncated(tmp_path, fake_pyg):
    values = [fake_pyg(1, **oc20_old(fake_pyg, i, 0)) for i in range(3)]
    env = lmdb.open(str(tmp_path / "data.0000.lmdb"), subdir=False, map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(b"0", values[0])
        txn.put(b"2", values[2])
        txn.put(b"length", pickle.dumps(3))
    env.close()
    with pytest.raises(DataFormatError, match=r"data.0000.lmdb:1: key 1 missing \(length says 3\)"):
        list(read(tmp_path, "oc20-lmdb"))
    reader = read(tmp_path, "oc20-lmdb", skip_bad=True)
    assert len(list(reader)) == 2 and reader.skipped == {"missing_key": 1}
    path = tmp_path / "data.0000.lmdb"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataFormatError, match="data.0000.lmdb: cannot open as LMDB"):
        list(read(tmp_path, "oc20-lmdb"))


# ----------------------------------------------------------------------------- aselmdb
def _atoms_list():
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixAtoms

    out = []
    for i in range(3):
        pos, cell = _slab(4)
        atoms = Atoms(numbers=[29, 29, 8, 1], positions=pos, cell=cell, pbc=True, tags=[0, 1, 2, 2])
        atoms.set_constraint(FixAtoms(indices=[0]))
        atoms.calc = SinglePointCalculator(
            atoms,
            energy=-10.0 - i,
            forces=RNG.normal(size=(4, 3)),
            stress=RNG.normal(size=6) * 0.01,
        )
        out.append(atoms)
    return out


def test_aselmdb_written_by_ase_db_backends(tmp_path):
    pytest.importorskip("ase_db_backends")
    from ase_db_backends.aselmdb import LMDBDatabase

    path = tmp_path / "omat.aselmdb"
    atoms_list = _atoms_list()
    db = LMDBDatabase(path)
    for i, atoms in enumerate(atoms_list):
        db.write(atoms, data={"charge": 0, "spin": 1 + i})
    db.delete([2])  # a deleted row must not come back
    db.close()
    assert detect_format(path) == "aselmdb"
    items = list(read(path, dataset="omat24", split="val"))
    assert len(items) == 2
    for (split, rec), atoms in zip(items, [atoms_list[0], atoms_list[2]]):
        assert split == "val" and rec.dataset == "omat24"
        np.testing.assert_array_equal(rec.positions, atoms.positions)
        assert rec.energy == atoms.get_potential_energy()
        np.testing.assert_array_equal(rec.forces, atoms.get_forces(apply_constraint=False))
        from ase.stress import voigt_6_to_full_3x3_stress

        np.testing.assert_array_equal(rec.stress, voigt_6_to_full_3x3_stress(atoms.get_stress()))
        assert rec.fixed.tolist() == [True, False, False, False]
        assert rec.tags.tolist() == [0, 1, 2, 2]
    assert items[0].record.source == "omat.aselmdb:1" and items[1].record.source == "omat.aselmdb:3"
    assert items[1].record.targets == {"charge": 0.0, "spin": 3.0}


def test_aselmdb_plain_list_encoding_matches(tmp_path):
    """fairchem's orjson writer stores arrays as plain nested lists."""
    path = tmp_path / "plain.aselmdb"
    atoms = _atoms_list()[0]
    row = {
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": [True, True, True],
        "energy": -10.0,
        "forces": atoms.get_forces(apply_constraint=False).tolist(),
        "constraints": [{"name": "FixAtoms", "kwargs": {"indices": [0]}}],
        "key_value_pairs": {"charge": -1},
        "data": {},
        "tags": [0, 1, 2, 2],
    }
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"1", zlib.compress(json.dumps(row).encode()))
        txn.put(b"nextid", zlib.compress(json.dumps(2).encode()))
    env.close()
    (rec,) = [r for _, r in read(path)]
    np.testing.assert_array_equal(rec.positions, atoms.positions)
    np.testing.assert_array_equal(rec.forces, atoms.get_forces(apply_constraint=False))
    assert rec.energy == -10.0 and rec.targets == {"charge": -1.0} and rec.fixed[0]


# A `torch_geometric.data.Data` pickled by the real PyG 2.8.1 (protocol -1, torch 2.13), zlib +
# base64, generated once with:
#   Data(pos=arange(12).reshape(4, 3) * 1.5 (float32), cell=eye(3)[None] * 9,
#        atomic_numbers=[1., 6, 8, 29], natoms=4, tags=[0, 1, 2, 2], fixed=[1, 0, 0, 0],
#        y=-1.5, force=arange(12).reshape(4, 3) / 8 (float32), sid=5, fid=2)
# It carries PyG-2 internals (GlobalStorage, DataEdgeAttr, DataTensorAttr) that a fake cannot
# be trusted to reproduce.
REAL_PYG2_DATA = (
    "eNrdlT9v00AYxs+x05I0jSIW1AqJiskIESVp0qYLaavSDuZvYfCCDse+xkaO7bPPFUWqFCTaUuShEsfGwMjIN6AfBzZGkBh4"
    "nThpAmnVtX3lx6e7e/ze65/Puk76450M6kY0w1xfN3GLuG3CfEsvGhrTujceSWtx84HfesN3uRzlMTFaBGuM+Vi3A26iKBc7"
    "7sHoCgyCMypgRpzA9Udc+dj1rDve903gABYmPLo+dv14UmvB9PSG7TY1+2nSH9RyBbc1z7OcVrcn7PCNb7+SNxI9N+BRrpu3"
    "iENmQRHRVeyTZmjZRr++7Qokk6Ppnm2wXgHbrmbgLd9t4+YOIwG4Vm8LCHVS77P2n0/rv+defnk8U+ykHvwQ4b5LkawWYFnP"
    "d5mruzbeJn5guQ4VwKBOw4xtMWYTTBzD0hyaeqdmYZDteAQH1msSUHGXSrKahsHAdH1G00pKFaFnOYxOKJIqxTlcp0UnFSkM"
    "YU1ZnYzNvZIp0ruvkF2HwlnCKUsFNQ+epWploVyGq1KqLVVoL6/uhVRUcg8ZlZ5AtucUjfMKWjGHhuO4gdDyMkJHoGPQT1Bh"
    "BSEZtAxSQR7o7Qrf45tcQYqkiPtcERVhnx9GU8DGJjoDNPA5ph75BvGJsWbpLP6om5zBM5GkE9vm5jXZnF29cbGh12qleq2+"
    "OAo9Mx76wAvQMwPgMdzh+L/fBy0AZPGAK5kY9gE/NG/2geY15rYtHTthuwmIErRTl2A/L5aqI2ilM/Zz7AW00gBdp9HbwwiQ"
    "fj/Zr3tcEfaG8U04Mb+AK1IkMa3V5zd7EfjdB8sp+EoL8/XawvnwJd4RfL0Qkjb1T3s6zvSW9YoYlwRiubxYr5bOuQd73iGI"
    "Ajo7zoIIlZEE4gU/mWpL8+VSuVo9z8k08P53MqG7AAF0DELwZ8/FJxXoRaP3px+BPoO+NsadTCdkxcAyuJKOxK24TYXRJPY0"
    "nziMm2LYDJvFv4EBjQ8="
)


def test_real_pyg2_pickle_reads_without_torch_geometric(tmp_path):
    import base64

    assert "torch_geometric" not in sys.modules
    write_lmdb(tmp_path / "data.0000.lmdb", [zlib.decompress(base64.b64decode(REAL_PYG2_DATA))])
    # (atoms 0 and 2 are periodic images of each other in this toy cell: skip validation)
    (rec,) = [r for _, r in read(tmp_path, validate=False)]
    np.testing.assert_array_equal(rec.positions, np.arange(12.0).reshape(4, 3) * 1.5)
    np.testing.assert_array_equal(rec.cell, np.eye(3) * 9.0)
    assert rec.atomic_numbers.tolist() == [1, 6, 8, 29]
    assert rec.energy == -1.5 and rec.tags.tolist() == [0, 1, 2, 2]
    assert rec.fixed.tolist() == [True, False, False, False]
    np.testing.assert_array_equal(rec.forces, np.arange(12.0).reshape(4, 3) / 8)
    assert rec.source == "data.0000.lmdb:0/random5/frame2"


def test_objects_without_a_cell_or_pbc_are_non_periodic(tmp_path, fake_pyg):
    """JMP's own MD22 / SPICE fine-tuning LMDBs store molecules with a zero cell, or none."""
    folder = tmp_path / "molecules"
    folder.mkdir()
    no_cell = {k: v for k, v in oc20_old(fake_pyg, sid=1, fid=0).items() if k != "cell"}
    zero_cell = {**oc20_old(fake_pyg, sid=2, fid=0), "cell": torch.zeros((1, 3, 3))}
    zero_cell_pbc = {**zero_cell, "sid": 3, "pbc": torch.tensor([True, True, True])}
    periodic = oc20_old(fake_pyg, sid=4, fid=0)
    objs = [no_cell, zero_cell, zero_cell_pbc, periodic]
    write_lmdb(folder / "data.0000.lmdb", [fake_pyg(1, **a) for a in objs])
    records = [r for _, r in read(folder)]
    assert [bool(r.pbc.any()) for r in records] == [False, False, False, True]
    for r in records:
        r.validate()  # no "singular cell"
