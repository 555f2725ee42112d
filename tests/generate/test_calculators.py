"""The calculator wrappers: GFN2 results and orbital access, skips, force/energy consistency."""

import numpy as np
import pytest
from ase.build import fcc111
from ase.units import Hartree

from openjmp.data.generate.calculators import (
    GFN2,
    check_emt_elements,
    emt_calculator,
    frontier_orbitals,
)
from openjmp.data.generate.common import SkipStructure
from openjmp.data.generate.molecules import embed

WATER_Z = np.array([8, 1, 1])
WATER_R = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])


def finite_difference_error(energy_fn, positions, forces, rng, h=1e-3, n_dirs=3):
    """max |(E(x+hd) - E(x-hd)) / 2h + F·d| over random unit directions d (eV/Å)."""
    worst = 0.0
    for _ in range(n_dirs):
        d = rng.normal(size=positions.shape)
        d /= np.linalg.norm(d)
        slope = (energy_fn(positions + h * d) - energy_fn(positions - h * d)) / (2 * h)
        worst = max(worst, abs(slope + float(np.sum(forces * d))))
    return worst


def test_frontier_orbitals_of_water_are_ordered_and_match_the_electron_count():
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", WATER_Z, WATER_R / 0.52917721067)
    calc.set("verbosity", 0)
    res = calc.singlepoint()
    homo, lumo = frontier_orbitals(res)
    eps = np.sort(res.get("orbital-energies"))
    # water: 8 valence electrons in GFN2 -> 4 occupied orbitals
    assert homo == pytest.approx(eps[3])
    assert lumo == pytest.approx(eps[4])
    assert -0.6 < homo < -0.3 < lumo  # Hartree; GFN2 water HOMO ≈ -0.45 Ha


def test_frontier_orbitals_missing_data_gives_nan():
    class NoOrbitals:
        def get(self, key):
            raise RuntimeError("not available")

    assert all(np.isnan(frontier_orbitals(NoOrbitals())))


def test_gfn2_wrapper_reports_orbitals_in_ev_and_dipole():
    res = GFN2(WATER_Z).compute(WATER_R, orbitals=True)
    assert res.homo < res.lumo
    assert res.homo == pytest.approx(frontier_orbitals_direct() * Hartree, abs=1e-6)
    assert 0.2 < np.linalg.norm(res.dipole) < 0.8  # e·Å (≈ 2 Debye)
    assert res.charges[0] < 0 < res.charges[1]


def frontier_orbitals_direct():
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", WATER_Z, WATER_R / 0.52917721067)
    calc.set("verbosity", 0)
    return frontier_orbitals(calc.singlepoint())[0]


def test_scf_failure_is_a_counted_skip():
    with pytest.raises(SkipStructure, match="^xtb-scf"):
        GFN2(WATER_Z, max_iter=1).compute(WATER_R)


def test_unsupported_emt_element_is_a_skip():
    with pytest.raises(SkipStructure, match="^emt-element.*26"):
        check_emt_elements(np.array([29, 26]))
    check_emt_elements(np.array([29, 79, 1, 8]))  # fine


def test_rdkit_failure_is_a_skip():
    with pytest.raises(SkipStructure, match="^rdkit-embed"):
        embed("C1CC", seed=0)  # unclosed ring


def test_gfn2_forces_are_minus_energy_gradient():
    atoms = embed("CCO", seed=3)
    rng = np.random.default_rng(0)
    pos = atoms.positions + rng.normal(scale=0.05, size=atoms.positions.shape)
    gfn2 = GFN2(atoms.numbers)
    forces = gfn2.compute(pos).forces
    err = finite_difference_error(lambda x: GFN2(atoms.numbers).compute(x).energy, pos, forces,
                                  rng)
    assert err < 2e-3  # eV/Å


def test_emt_forces_are_minus_energy_gradient_on_an_adsorbate_slab():
    slab = fcc111("Pt", size=(2, 2, 3), vacuum=6.0)
    slab.rattle(0.05, seed=1)
    slab.calc = emt_calculator()
    forces = slab.get_forces()

    def energy(x):
        s = slab.copy()
        s.positions = x
        s.calc = emt_calculator()
        return s.get_potential_energy()

    err = finite_difference_error(energy, slab.positions.copy(), forces,
                                  np.random.default_rng(1))
    assert err < 1e-4
