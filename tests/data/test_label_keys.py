"""extxyz label keys: ASE's calculator results, MACE's REF_* keys, and keys named explicitly
(issue 16: energy_key / forces_key / stress_key)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from openjmp.data.readers import read


def _frames():
    a = molecule("H2O")
    a.info["REF_energy"] = -14.5
    a.arrays["REF_forces"] = np.arange(9.0).reshape(3, 3)
    a.info["homo"] = -7.0
    b = bulk("Cu", "fcc", a=3.6, cubic=True)
    b.info["REF_energy"] = -1.0
    b.info["REF_stress"] = np.arange(1.0, 7.0)  # Voigt xx yy zz yz xz xy
    b.arrays["REF_forces"] = np.zeros((4, 3))
    b.info["dft_E"] = -2.0
    b.arrays["dft_F"] = np.ones((4, 3))
    return [a, b]


def test_mace_ref_keys_are_read_as_labels_not_targets(tmp_path):
    import ase.io

    path = tmp_path / "mace.extxyz"
    ase.io.write(path, _frames())
    records = [r for _, r in read(path)]
    assert records[0].energy == pytest.approx(-14.5)
    np.testing.assert_allclose(records[0].forces, np.arange(9.0).reshape(3, 3))
    assert "REF_energy" not in records[0].targets and records[0].targets["homo"] == -7.0
    stress = records[1].stress
    assert stress.shape == (3, 3) and stress[0, 0] == 1.0 and stress[1, 2] == 4.0 and stress[0, 1] == 6.0


def test_explicit_keys_pick_other_labels(tmp_path):
    import ase.io

    path = tmp_path / "custom.extxyz"
    ase.io.write(path, _frames())
    records = [r for _, r in read(path, energy_key="dft_E", forces_key="dft_F")]
    assert records[0].energy is None and records[0].forces is None  # absent keys leave labels empty
    assert records[1].energy == -2.0
    np.testing.assert_allclose(records[1].forces, 1.0)
    assert "dft_E" not in records[1].targets and "REF_energy" in records[1].targets


def test_calculator_results_win_over_ref_keys(tmp_path):
    import ase.io

    a = molecule("H2O")
    a.info["REF_energy"] = -1.0
    a.calc = SinglePointCalculator(a, energy=-5.0, forces=np.zeros((3, 3)))
    path = tmp_path / "both.extxyz"
    ase.io.write(path, a)
    (record,) = [r for _, r in read(path)]
    assert record.energy == -5.0
    (record,) = [r for _, r in read(path, energy_key="REF_energy")]
    assert record.energy == -1.0
