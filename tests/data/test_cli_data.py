"""``openjmp data convert|inspect`` end to end, the generic ASE reader and format detection."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from openjmp.cli.main import main
from openjmp.data.readers import FORMATS, detect_format, get_reader, read
from openjmp.units import HARTREE_TO_EV


def write_ani(path, n=6):
    rng = np.random.default_rng(5)
    with h5py.File(path, "w") as f:
        g = f.create_group("CH4")
        g["atomic_numbers"] = np.array([6, 1, 1, 1, 1], np.uint8)
        base = np.array(
            [[0, 0, 0], [1.09, 0, 0], [0, 1.09, 0], [0, 0, 1.09], [-0.6, -0.6, -0.6]], float
        )
        g["coordinates"] = (base[None] + rng.normal(scale=0.02, size=(n, 5, 3))).astype(np.float32)
        e = rng.normal(-40.5, 0.01, n)
        e[2] = np.nan
        g["wb97x_dz.energy"] = e
        g["wb97x_dz.forces"] = rng.normal(0, 0.01, (n, 5, 3)).astype(np.float32)
    return e


def _json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_convert_inspect_store(tmp_path, capsys):
    src = tmp_path / "ani1x-release.h5"
    e = write_ani(src)
    s = _json(capsys, ["data", "inspect", str(src), "--json"])
    assert s["format"] == "ani1x" and s["records"] == 5 and s["atoms"] == 25
    assert s["elements"] == {"C": 5, "H": 20}
    assert s["skipped"] == {"nan_label": 1} and s["splits"] == {}
    good = np.delete(e, 2) * HARTREE_TO_EV
    assert s["energy"]["count"] == 5 and np.isclose(
        s["energy"]["mean"], good.mean(), rtol=0, atol=1e-9
    )
    assert s["energy"]["min"] == good.min() and s["energy"]["max"] == good.max()
    assert s["forces"]["count"] == 75 and "abs_sum" in s["forces"]
    out = tmp_path / "store"
    assert (
        main(["data", "convert", str(src), "--out", str(out), "--no-progress", "--shard-size", "2"])
        == 0
    )
    assert "wrote 5 records" in capsys.readouterr().out
    t = _json(capsys, ["data", "inspect", str(out), "--json"])
    assert t["format"] == "store"
    for key in ("records", "atoms", "elements", "energy", "forces", "targets", "skipped"):
        assert t[key] == s[key], key


def test_cli_options_split_and_errors(tmp_path, capsys):
    path = tmp_path / "rmd17_ethanol.npz"
    rng = np.random.default_rng(6)
    base = np.stack([np.arange(3) * 1.4, np.zeros(3), np.zeros(3)], axis=1)
    np.savez(
        path,
        nuclear_charges=np.array([6, 8, 1]),
        coords=base[None] + rng.normal(scale=0.02, size=(1100, 3, 3)),
        energies=rng.normal(size=1100),
        forces=rng.normal(size=(1100, 3, 3)),
    )
    s = _json(capsys, ["data", "inspect", str(path), "-o", "split=jmp", "--json"])
    assert s["splits"] == {"test": 100, "train": 950, "val": 50}
    s = _json(capsys, ["data", "inspect", str(path), "-o", "split=jmp", "--split", "val", "--json"])
    assert s["records"] == 50 and s["splits"] == {"val": 50}
    out = tmp_path / "store"
    assert (
        main(["data", "convert", str(path), "--out", str(out), "-o", "split=jmp", "--no-progress"])
        == 0
    )
    s = _json(capsys, ["data", "inspect", str(out), "--split", "train", "--json"])
    assert s["records"] == 950 and s["splits"] == {"train": 950}
    capsys.readouterr()
    assert main(["data", "convert", str(path), "--out", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["data", "inspect", str(tmp_path / "missing.h5")]) == 2
    assert "missing.h5: no such file" in capsys.readouterr().err
    assert main(["data", "inspect", str(path), "--format", "nope"]) == 2
    assert "unknown format 'nope'" in capsys.readouterr().err
    assert main(["data", "inspect", str(path), "-o", "bogus=1"]) == 2
    assert "unknown option(s) bogus" in capsys.readouterr().err


def test_inspect_table_form(tmp_path, capsys):
    src = tmp_path / "a.h5"
    write_ani(src)
    assert main(["data", "inspect", str(src)]) == 0
    out = capsys.readouterr().out
    assert "records" in out and "nan_label" in out


def test_ase_reader_formats(tmp_path):
    from ase.build import bulk, molecule
    from ase.calculators.emt import EMT
    from ase.db import connect
    from ase.io import write

    frames = []
    for a in (3.5, 3.6, 3.7):
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.get_forces()
        frames.append(atoms)
    xyz = tmp_path / "cu.extxyz"
    write(xyz, frames)
    traj = tmp_path / "cu.traj"
    write(traj, frames)
    db = tmp_path / "cu.db"
    with connect(db) as con:
        for atoms in frames:
            con.write(atoms)
    for path in (xyz, traj, db):
        assert detect_format(path) == "ase"
        items = list(read(path, dataset="cu", split="train"))
        assert len(items) == 3 and all(s == "train" for s, _ in items)
        for (_, rec), atoms in zip(items, frames):
            assert rec.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-12)
            np.testing.assert_allclose(rec.forces, atoms.get_forces(), atol=1e-12)
            assert rec.dataset == "cu"
    assert list(read(xyz))[1].record.source == "cu.extxyz#1"
    bad = tmp_path / "bad.extxyz"
    bad.write_text("2\nProperties=species:S:1:pos:R:3\nCu 0 0 0\n")
    with pytest.raises(ValueError, match="bad.extxyz"):
        list(read(bad))
    del molecule


def test_every_format_has_a_reader():
    assert set(FORMATS) == {
        "ani1x",
        "transition1x",
        "oc20-lmdb",
        "aselmdb",
        "qm9",
        "qm9-pyg",
        "rmd17",
        "md22",
        "spice",
        "matbench",
        "qmof",
        "ase",
        "store",
    }
    for name in FORMATS:
        assert get_reader(name).name == name
