"""rMD17 and MD22 npz readers: units, shapes, official and JMP splits, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from openjmp.data.readers import DataFormatError, detect_format, read
from openjmp.units import KCAL_PER_MOL_TO_EV

RNG = np.random.default_rng(2)


def _traj(n_frames, n_atoms):
    base = np.stack([np.arange(n_atoms) * 1.4, np.zeros(n_atoms), np.zeros(n_atoms)], axis=1)
    return base[None] + RNG.normal(scale=0.03, size=(n_frames, n_atoms, 3))


def write_rmd17(folder, n_frames=1200, n_atoms=9):
    npz_dir = folder / "rmd17" / "npz_data"
    npz_dir.mkdir(parents=True)
    path = npz_dir / "rmd17_ethanol.npz"
    arrays = dict(
        nuclear_charges=np.array([6, 6, 8, 1, 1, 1, 1, 1, 1][:n_atoms]),
        coords=_traj(n_frames, n_atoms),
        energies=RNG.normal(-97000, 2, n_frames),
        forces=RNG.normal(0, 20, (n_frames, n_atoms, 3)),
        old_indices=np.arange(n_frames),
        old_energies=RNG.normal(-97000, 2, n_frames),
        old_forces=RNG.normal(0, 20, (n_frames, n_atoms, 3)),
    )
    np.savez(path, **arrays)
    splits = folder / "rmd17" / "splits"
    splits.mkdir()
    for k in range(1, 6):
        perm = np.random.default_rng(k).permutation(n_frames)
        np.savetxt(splits / f"index_train_{k:02d}.csv", perm[:100], fmt="%d")
        np.savetxt(splits / f"index_test_{k:02d}.csv", perm[100:300], fmt="%d")
    return path, arrays


def test_rmd17_units(tmp_path):
    path, a = write_rmd17(tmp_path)
    assert detect_format(path) == "rmd17"
    items = list(read(path))
    assert len(items) == 1200 and all(s is None for s, _ in items)
    rec = items[17].record
    assert rec.source == "rmd17_ethanol.npz:17" and rec.dataset == "rmd17"
    assert rec.energy == a["energies"][17] * KCAL_PER_MOL_TO_EV
    np.testing.assert_array_equal(rec.forces, a["forces"][17] * KCAL_PER_MOL_TO_EV)
    np.testing.assert_array_equal(rec.positions, a["coords"][17])  # Å unchanged


def test_rmd17_official_split_files(tmp_path):
    path, _ = write_rmd17(tmp_path)
    items = list(read(path, split="official", split_index=3))
    train = np.loadtxt(tmp_path / "rmd17/splits/index_train_03.csv", dtype=int)
    test = np.loadtxt(tmp_path / "rmd17/splits/index_test_03.csv", dtype=int)
    got_train = [i for i, (s, _) in enumerate(items) if s == "train"]
    got_test = [i for i, (s, _) in enumerate(items) if s == "test"]
    assert got_train == sorted(train.tolist()) and got_test == sorted(test.tolist())
    assert sum(1 for s, _ in items if s is None) == 1200 - 300
    with pytest.raises(FileNotFoundError, match="index_train_01.csv"):
        list(read(path, split="official", splits_dir=str(tmp_path)))


def test_rmd17_jmp_split(tmp_path):
    path, _ = write_rmd17(tmp_path)
    splits = np.array([s for s, _ in read(path, split="jmp")])
    perm = np.arange(1200)
    np.random.RandomState(42).shuffle(perm)
    assert (splits[perm[:950]] == "train").all()
    assert (splits[perm[950:1000]] == "val").all()
    assert (splits[perm[1000:]] == "test").all()


def test_rmd17_bad_shapes_missing_key_nan(tmp_path):
    path, a = write_rmd17(tmp_path, n_frames=10)
    bad = dict(a)
    bad["forces"] = a["forces"][:, :5]
    np.savez(path, **bad)
    with pytest.raises(
        DataFormatError,
        match=r"rmd17_ethanol.npz: forces has shape \(10, 5, 3\), expected \(10, 9, 3\)",
    ):
        list(read(path))
    del bad["forces"]
    np.savez(path, **bad)
    with pytest.raises(DataFormatError, match="rmd17_ethanol.npz: missing key 'forces'"):
        list(read(path))
    nan = dict(a)
    nan["energies"] = a["energies"].copy()
    nan["energies"][4] = np.nan
    np.savez(path, **nan)
    with pytest.raises(DataFormatError, match=r"rmd17_ethanol.npz:4: non-finite energy"):
        list(read(path))
    reader = read(path, skip_bad=True)
    assert len(list(reader)) == 9 and reader.skipped == {"invalid_structure": 1}
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataFormatError, match="rmd17_ethanol.npz"):
        list(read(path, "rmd17"))


def write_md22(tmp_path, n_frames=50, n_atoms=6, e_unit="kcal/mol"):
    path = tmp_path / "md22_AT-AT.npz"
    a = dict(
        z=np.array([6, 7, 8, 1, 1, 1][:n_atoms], dtype=np.int64),
        R=_traj(n_frames, n_atoms),
        E=RNG.normal(-1e5, 3, (n_frames, 1)),  # (F, 1): the MD22 pitfall
        F=RNG.normal(0, 10, (n_frames, n_atoms, 3)),
        E_mean=np.float64(-1e5),
        name=np.array("AT-AT"),
        theory=np.array("PBE+MBD, 500K"),
        e_unit=np.array(e_unit),
        r_unit=np.array("Ang"),
        perms=np.arange(n_atoms)[None],
    )
    np.savez(path, **a)
    return path, a


def test_md22_energy_shape_units_and_jmp_split(tmp_path):
    path, a = write_md22(tmp_path)
    assert detect_format(path) == "md22"
    items = list(read(path))
    assert len(items) == 50
    rec = items[7].record
    assert rec.energy == a["E"][7, 0] * KCAL_PER_MOL_TO_EV
    np.testing.assert_array_equal(rec.forces, a["F"][7] * KCAL_PER_MOL_TO_EV)
    splits = np.array([s for s, _ in read(path, split="jmp", train_val_size=20)])
    perm = np.arange(50)
    np.random.RandomState(42).shuffle(perm)
    assert (splits[perm[:19]] == "train").all() and (splits[perm[19:20]] == "val").all()
    assert (splits[perm[20:]] == "test").all()
    assert read(path, split="jmp").train_val_size == 3000  # JMP's size for AT-AT


def test_md22_wrong_unit_refused(tmp_path):
    path, _ = write_md22(tmp_path, e_unit="eV")
    with pytest.raises(DataFormatError, match="e_unit is 'eV'"):
        list(read(path))
