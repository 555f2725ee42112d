"""Each domain, regenerated at size ``tiny``: read back by the real reader of its layout with the
expected counts and units; stored labels equal a fresh calculation; forces are −∇E."""

import gzip
import json

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.units import Hartree, kcal, mol

from openjmp.data.generate.calculators import GFN2, emt_calculator
from openjmp.data.readers import read

from .test_calculators import finite_difference_error


def records(path, fmt, **kw):
    reader = read(path, format=fmt, **kw)
    items = list(reader)
    return items, reader


def emt_energy_forces(numbers, positions, cell, pbc):
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
    atoms.calc = emt_calculator()
    return atoms.get_potential_energy(), atoms.get_forces()


def test_oc20_reads_back_as_aselmdb_with_tags_constraints_and_emt_labels(tiny_suite):
    out, infos = tiny_suite
    info = infos["mini-oc20"]
    total = 0
    for split in ("train", "val", "test"):
        items, reader = records(out / "mini-oc20" / split, "aselmdb")
        assert len(items) == info["splits"][split]["frames"]
        total += len(items)
        rec = items[-1].record
        assert rec.pbc.all()
        assert set(np.unique(rec.tags)) == {0, 1, 2}
        assert np.array_equal(rec.fixed, rec.tags == 0)
        e, f = emt_energy_forces(rec.atomic_numbers, rec.positions, rec.cell, rec.pbc)
        assert rec.energy == pytest.approx(e, abs=1e-9)
        np.testing.assert_allclose(rec.forces, f, atol=1e-9)
    assert total == info["counts"]["frames"]


def test_oc20_frames_satisfy_finite_differences(tiny_suite):
    out, _ = tiny_suite
    items, _ = records(out / "mini-oc20" / "train", "aselmdb")
    rec = items[0].record

    def energy(x):
        return emt_energy_forces(rec.atomic_numbers, x, rec.cell, rec.pbc)[0]

    err = finite_difference_error(energy, rec.positions, rec.forces, np.random.default_rng(0))
    assert err < 1e-4


def test_ani1x_reads_back_in_ev_and_matches_gfn2(tiny_suite):
    out, infos = tiny_suite
    path = out / "mini-ani1x" / "ani1x-release.h5"
    items, reader = records(path, "ani1x")
    assert len(items) == infos["mini-ani1x"]["counts"]["conformers"]
    with h5py.File(path) as f:
        group = sorted(f)[0]
        raw_e = f[group]["wb97x_dz.energy"][0]
        assert f[group]["coordinates"].dtype == np.float32
        assert f[group]["atomic_numbers"].dtype == np.uint8
    rec = next(i.record for i in items if i.record.source.endswith(f"{group}/0"))
    assert rec.energy == pytest.approx(raw_e * Hartree, rel=1e-12)  # converted once, Ha -> eV
    fresh = GFN2(rec.atomic_numbers).compute(rec.positions)
    assert rec.energy == pytest.approx(fresh.energy, abs=2e-3)  # float32 coordinates
    np.testing.assert_allclose(rec.forces, fresh.forces, atol=2e-3)
    # harmonic sampling at 300-1000 K: thermal forces, not huge random-displacement forces
    assert np.abs(rec.forces).max() < 15.0


def test_ani1x_has_no_finetuning_molecules(tiny_suite):
    from openjmp.data.generate.molecules import RMD17_SMILES, canonical
    from openjmp.data.generate.pools import molecule_pools

    pre, fine = molecule_pools()
    assert not set(pre) & set(fine)
    assert not {canonical(s) for s in RMD17_SMILES.values()} & set(pre)


def test_transition1x_reads_back_with_splits_and_subgroups(tiny_suite):
    out, infos = tiny_suite
    info = infos["mini-transition1x"]
    path = out / "mini-transition1x" / "transition1x-release.h5"
    items, _ = records(path, "transition1x")
    assert len(items) == info["counts"]["frames"]
    for split, counts in info["splits"].items():
        assert sum(1 for i in items if i.split == split) == counts["frames"]
    with h5py.File(path) as f:
        formula = sorted(f["data"])[0]
        rxn = f["data"][formula]["rxn0000"]
        energies = rxn["wB97x_6-31G(d).energy"][:]
        ts = rxn["transition_state"]["wB97x_6-31G(d).energy"][0]
        assert ts >= rxn["reactant"]["wB97x_6-31G(d).energy"][0]
        assert rxn["positions"].shape[0] == energies.shape[0]
        assert isinstance(f.get(f"train/{formula}", getlink=True), h5py.SoftLink) or any(
            isinstance(f.get(f"{s}/{formula}", getlink=True), h5py.SoftLink)
            for s in ("val", "test"))
        pos, e, forces = rxn["positions"][3], energies[3], rxn["wB97x_6-31G(d).forces"][3]
        z = rxn["atomic_numbers"][:]
    fresh = GFN2(z).compute(pos)
    assert e == pytest.approx(fresh.energy, abs=1e-5)  # eV, not converted
    np.testing.assert_allclose(forces, fresh.forces, atol=1e-4)


def test_qm9_reads_back_with_gfn2_properties(tiny_suite):
    out, infos = tiny_suite
    items, _ = records(out / "mini-qm9" / "dsgdb9nsd.xyz.tar.bz2", "qm9")
    assert len(items) == infos["mini-qm9"]["counts"]["molecules"]
    for item in items:
        t = item.record.targets
        assert t["homo"] < t["lumo"]
        assert t["gap"] == pytest.approx(t["lumo"] - t["homo"], abs=1e-4)  # eV
        assert np.isnan(t["alpha"]) and np.isnan(t["r2"])  # not available from xTB
        assert t["U0"] < t["U"] < t["H"] and t["G"] < t["H"]
        assert t["zpve"] > 0 and t["Cv"] > 5
        # a relaxed geometry: GFN2 forces vanish
        assert np.abs(GFN2(item.record.atomic_numbers).compute(item.record.positions).forces
                      ).max() < 0.02
        fresh = GFN2(item.record.atomic_numbers).compute(item.record.positions, orbitals=True)
        assert t["homo"] == pytest.approx(fresh.homo, abs=1e-4)


def test_rmd17_reads_back_in_ev_with_official_splits(tiny_suite):
    out, infos = tiny_suite
    path = out / "mini-rmd17" / "rmd17" / "npz_data" / "rmd17_ethanol.npz"
    items, _ = records(path, "rmd17", split="official")
    assert len(items) == infos["mini-rmd17"]["counts"]["frames_ethanol"]
    assert {i.split for i in items} <= {"train", "test", None}
    with np.load(path) as z:
        raw = z["energies"][0]
    rec = items[0].record
    assert rec.energy == pytest.approx(raw * kcal / mol, rel=1e-12)
    fresh = GFN2(rec.atomic_numbers).compute(rec.positions)
    assert rec.energy == pytest.approx(fresh.energy, abs=1e-5)
    np.testing.assert_allclose(rec.forces, fresh.forces, atol=1e-4)
    err = finite_difference_error(lambda x: GFN2(rec.atomic_numbers).compute(x).energy,
                                  rec.positions, rec.forces, np.random.default_rng(2))
    assert err < 2e-3


def test_md22_reads_back_in_ev(tiny_suite):
    out, infos = tiny_suite
    path = out / "mini-md22" / "md22_Ac-Ala3-NHMe.npz"
    items, _ = records(path, "md22")
    assert len(items) == infos["mini-md22"]["counts"]["frames"]
    with np.load(path) as z:  # no pickles needed
        assert z["E"].shape == (len(items), 1)
        assert str(z["e_unit"]) == "kcal/mol"
    rec = items[-1].record
    fresh = GFN2(rec.atomic_numbers).compute(rec.positions)
    assert rec.energy == pytest.approx(fresh.energy, abs=1e-5)


def test_matbench_reads_back_with_folds_and_emt_targets(tiny_suite):
    out, infos = tiny_suite
    n = infos["mini-matbench"]["counts"]["structures"]
    path = out / "mini-matbench" / "matbench_mp_e_form.json.gz"
    items, _ = records(path, "matbench")
    assert len(items) == n
    with gzip.open(path) as fh:
        frame = json.load(fh)
    assert set(frame) == {"index", "columns", "data"}
    for item in items:
        rec = item.record
        assert rec.pbc.all()
        assert -1.0 < rec.targets["e_form"] < 1.0  # eV/atom
    kv, _ = records(out / "mini-matbench" / "matbench_log_kvrh.json.gz", "matbench")
    assert all(1.0 < i.record.targets["log10(K_VRH)"] < 2.7 for i in kv)  # 10-500 GPa
    # the written structure is the EMT-relaxed one: forces are small
    rec = items[0].record
    _, f = emt_energy_forces(rec.atomic_numbers, rec.positions, rec.cell, rec.pbc)
    assert np.abs(f).max() < 0.1
