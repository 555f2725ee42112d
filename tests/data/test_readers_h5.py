"""ANI-1x, Transition1x and SPICE readers on small HDF5 files written in the real layouts."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from openjmp.data.readers import DataFormatError, detect_format, read
from openjmp.units import BOHR_TO_ANGSTROM, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV

RNG = np.random.default_rng(0)


def _molecule(n_atoms: int, n_conf: int) -> np.ndarray:
    """(n_conf, n_atoms, 3) positions, atoms ~1.5 Å apart (valid structures)."""
    base = np.stack([np.arange(n_atoms) * 1.5, np.zeros(n_atoms), np.zeros(n_atoms)], axis=1)
    return base[None] + RNG.normal(scale=0.05, size=(n_conf, n_atoms, 3))


# ----------------------------------------------------------------------------- ANI-1x
def write_ani1x(path, nan_energy_rows=(1,), nan_force_rows=(2,)):
    groups = {
        "C2H6": np.array([6, 6, 1, 1, 1, 1, 1, 1], np.uint8),
        "H2O": np.array([8, 1, 1], np.uint8),
    }
    truth = {}
    with h5py.File(path, "w") as f:
        for name, z in groups.items():
            nc = 5
            g = f.create_group(name)
            g["atomic_numbers"] = z
            pos = _molecule(len(z), nc).astype(np.float32)
            g["coordinates"] = pos
            e = RNG.normal(-100, 1, nc)
            fr = RNG.normal(0, 0.05, (nc, len(z), 3)).astype(np.float32)
            if name == "C2H6":
                e[list(nan_energy_rows)] = np.nan
                fr[list(nan_force_rows), 0, 0] = np.nan
            g["wb97x_dz.energy"] = e
            g["wb97x_dz.forces"] = fr
            g["ccsd(t)_cbs.energy"] = np.full(nc, np.nan)  # ragged level: all NaN here
            g["mp2_dz.corr_energy"] = RNG.normal(0, 0.1, nc)
            truth[name] = (z, pos, e, fr)
    return truth


def test_ani1x_units_sources_and_nan_rows_skipped(tmp_path):
    path = tmp_path / "ani1x-release.h5"
    truth = write_ani1x(path)
    assert detect_format(path) == "ani1x"
    reader = read(path)
    items = list(reader)
    assert len(items) == 10 - 2  # one NaN energy row, one NaN force row
    assert reader.skipped == {"nan_label": 2}
    by_source = {r.source: r for _, r in items}
    assert all(split is None for split, _ in items)
    z, pos, e, fr = truth["C2H6"]
    rec = by_source["ani1x-release.h5:C2H6/3"]
    assert rec.dataset == "ani1x"
    np.testing.assert_array_equal(rec.atomic_numbers, z)
    np.testing.assert_array_equal(rec.positions, pos[3].astype(np.float64))  # Å, no conversion
    assert rec.energy == e[3] * HARTREE_TO_EV  # Hartree → eV exactly once
    np.testing.assert_array_equal(
        rec.forces, fr[3].astype(np.float64) * HARTREE_TO_EV
    )  # Ha/Å → eV/Å
    assert "ani1x-release.h5:C2H6/1" not in by_source and "ani1x-release.h5:C2H6/2" not in by_source


def test_ani1x_level_without_forces_and_all_nan(tmp_path):
    path = tmp_path / "a.h5"
    write_ani1x(path)
    reader = read(path, "ani1x", level="ccsd(t)_cbs", forces=False)
    assert list(reader) == []
    assert reader.skipped["nan_label"] == 10
    with pytest.raises(DataFormatError, match=r"C2H6.*ccsd\(t\)_cbs.forces"):
        list(read(path, "ani1x", level="ccsd(t)_cbs"))
    with pytest.raises(ValueError, match="unknown level"):
        read(path, "ani1x", level="mp2_dz")  # a correlation energy, not a total energy


def test_ani1x_bad_shape_and_missing_key(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("CH4")
        g["atomic_numbers"] = np.array([6, 1, 1, 1, 1], np.uint8)
        g["coordinates"] = _molecule(5, 3).astype(np.float32)
        g["wb97x_dz.energy"] = np.zeros(4)  # wrong: 4 energies for 3 conformers
        g["wb97x_dz.forces"] = np.zeros((3, 5, 3), np.float32)
        h = f.create_group("H2")
        h["atomic_numbers"] = np.array([1, 1], np.uint8)
        h["coordinates"] = _molecule(2, 2).astype(np.float32)
        h["wb97x_dz.energy"] = np.zeros(2)  # no forces dataset
    with pytest.raises(
        DataFormatError,
        match=r"bad.h5:CH4: coordinates has shape \(3, 5, 3\), expected \(4, 5, 3\)",
    ):
        list(read(path, "ani1x"))
    reader = read(path, "ani1x", skip_bad=True)
    assert list(reader) == []
    assert reader.skipped == {"bad_group": 2}


def test_truncated_hdf5_is_a_clear_error(tmp_path):
    path = tmp_path / "ani1x-release.h5"
    write_ani1x(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFormatError, match="ani1x-release.h5: cannot open as HDF5"):
        list(read(path, "ani1x"))


# ----------------------------------------------------------------------------- Transition1x
TEST_FORMULAS = ["C3H5NO2", "C2H5NO2", "C2H3N3O2", "C2HNO3", "C3H8N2O", "C3HNO2", "C5H5NO", "C2HNO"]
VAL_FORMULAS = ["C3N2O", "C2H2N2O", "C4H10N2O", "C3H6N2O", "C4H9NO2", "CHN3O", "C2H6N2O", "CN2O3"]
ENERGY, FORCES = "wB97x_6-31G(d).energy", "wB97x_6-31G(d).forces"


def write_t1x(path, formulas: dict[str, str | None]):
    """formula → split (None: only under /data). Two reactions of 3 frames per formula."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for formula in formulas:
            fg = data.create_group(formula)
            for r in range(2):
                g = fg.create_group(f"rxn{r:04d}")
                z = np.array([6, 1, 8, 7], np.int64)
                pos = _molecule(4, 3)
                g["atomic_numbers"] = z
                g["positions"] = pos
                g[ENERGY] = RNG.normal(-3000, 1, 3)
                g[FORCES] = RNG.normal(0, 0.1, (3, 4, 3))
                for sub, frame in (("reactant", 0), ("transition_state", 1), ("product", 2)):
                    s = g.create_group(sub)
                    s["atomic_numbers"] = z
                    s["positions"] = pos[frame : frame + 1]
                    s[ENERGY] = g[ENERGY][frame : frame + 1]
                    s[FORCES] = g[FORCES][frame : frame + 1]
                    s["hash"] = "abc"
        for split in ("train", "val", "test"):
            sg = f.create_group(split)
            for formula, s in formulas.items():
                if s == split:
                    sg[formula] = h5py.SoftLink(f"/data/{formula}")


def test_transition1x_splits_by_formula_no_double_counting(tmp_path):
    path = tmp_path / "transition1x-release.h5"
    formulas = {
        TEST_FORMULAS[0]: "test",
        TEST_FORMULAS[5]: "test",
        VAL_FORMULAS[2]: "val",
        "C4H6O": "train",
        "C5H8": "train",
        "CH4O": None,
    }
    write_t1x(path, formulas)
    assert detect_format(path) == "transition1x"
    items = list(read(path))
    # 6 formulas × 2 reactions × 3 frames, each once (subgroups and links not double counted)
    assert len(items) == 36
    assert len({r.source for _, r in items}) == 36
    for split, rec in items:
        formula = rec.source.split(":")[1].split("/")[0]
        assert split == formulas[formula]
        if split == "test":
            assert formula in TEST_FORMULAS
        if split == "val":
            assert formula in VAL_FORMULAS
    counts = {s: sum(1 for sp, _ in items if sp == s) for s in ("train", "val", "test", None)}
    assert counts == {"train": 12, "val": 6, "test": 12, None: 6}
    # values unconverted (file is in eV, Å)
    with h5py.File(path) as f:
        e = f["data/C5H8/rxn0001"][ENERGY][2]
        fr = f["data/C5H8/rxn0001"][FORCES][2]
    rec = next(r for _, r in items if r.source == "transition1x-release.h5:C5H8/rxn0001/2")
    assert rec.energy == e
    np.testing.assert_array_equal(rec.forces, fr)
    only_val = list(read(path, split="val"))
    assert len(only_val) == 6 and all(s == "val" for s, _ in only_val)


def test_transition1x_missing_key(tmp_path):
    path = tmp_path / "t1x.h5"
    write_t1x(path, {"C2H4": "train"})
    with h5py.File(path, "a") as f:
        del f["data/C2H4/rxn0001"][FORCES]
    with pytest.raises(
        DataFormatError, match=r"t1x.h5:C2H4/rxn0001: missing key 'wB97x_6-31G\(d\).forces'"
    ):
        list(read(path, "transition1x"))
    reader = read(path, "transition1x", skip_bad=True)
    assert len(list(reader)) == 3 and reader.skipped == {"bad_group": 1}


# ----------------------------------------------------------------------------- SPICE
DIPEPTIDES = "SPICE Dipeptides Single Points Dataset v1.2"
SOLVATED = "SPICE Solvated Amino Acids Single Points Dataset v1.1"


def write_spice(path, units_attr="bohr"):
    truth = {}
    with h5py.File(path, "w") as f:
        for name, subset, z, m in (
            ("ALA ALA", DIPEPTIDES, [6, 6, 8, 7, 1], 4),
            ("GLY", SOLVATED, [6, 8, 1, 1], 3),
            ("[Na+]", "SPICE PubChem Set 1 Single Points Dataset v1.2", [11, 8, 1], 2),
        ):
            g = f.create_group(name)
            g["subset"] = np.array([subset.encode()])
            g["smiles"] = np.array([b"C"])
            g["atomic_numbers"] = np.array(z, np.int16)
            pos = (_molecule(len(z), m) / BOHR_TO_ANGSTROM).astype(np.float32)  # stored in bohr
            g["conformations"] = pos
            g["conformations"].attrs["units"] = units_attr
            e = RNG.normal(-500, 1, m)
            grad = RNG.normal(0, 0.02, (m, len(z), 3)).astype(np.float32)
            g["dft_total_energy"] = e
            g["dft_total_gradient"] = grad
            g["formation_energy"] = e + 400
            truth[name] = (pos, e, grad)
    return truth


def test_spice_units_and_force_sign(tmp_path):
    path = tmp_path / "SPICE-1.1.4.hdf5"
    truth = write_spice(path)
    assert detect_format(path) == "spice"
    items = list(read(path))
    assert len(items) == 9
    rec = next(r for _, r in items if r.source == "SPICE-1.1.4.hdf5:ALA ALA/2")
    pos, e, grad = truth["ALA ALA"]
    np.testing.assert_array_equal(rec.positions, pos[2].astype(np.float64) * BOHR_TO_ANGSTROM)
    assert rec.energy == e[2] * HARTREE_TO_EV
    expected = -grad[2].astype(np.float64) * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM
    np.testing.assert_array_equal(rec.forces, expected)
    # sign: forces point against the gradient
    assert np.all(np.sign(rec.forces[grad[2] != 0]) == -np.sign(grad[2][grad[2] != 0]))
    assert rec.targets["formation_energy"] == (e[2] + 400) * HARTREE_TO_EV


def test_spice_subset_selection_and_jmp_split(tmp_path):
    path = tmp_path / "spice.h5"
    write_spice(path)
    items = list(read(path, "spice", subsets=["dipeptides", "solvated amino acids"]))
    assert len(items) == 7
    assert {r.source.split(":")[1].split("/")[0] for _, r in items} == {"ALA ALA", "GLY"}
    items = list(read(path, "spice", subsets=[DIPEPTIDES, SOLVATED], split="jmp"))
    splits = [s for s, _ in items]
    n = 7
    assert splits.count("train") == int(0.8 * n) and splits.count("test") == int(0.1 * n)
    assert splits.count("val") == n - int(0.8 * n) - int(0.1 * n)
    perm = np.arange(n)
    np.random.RandomState(42).shuffle(perm)
    assert [splits[i] for i in perm[: int(0.8 * n)]] == ["train"] * int(0.8 * n)


def test_spice_refuses_angstrom_positions(tmp_path):
    path = tmp_path / "spice.h5"
    write_spice(path, units_attr="angstrom")
    with pytest.raises(
        DataFormatError, match="conformations has units 'angstrom', expected 'bohr'"
    ):
        list(read(path, "spice"))
