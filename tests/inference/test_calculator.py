"""JMPCalculator: gradient forces and stress against finite differences, NVE conservation,
head selection and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from inference_helpers import slab, triclinic_bulk, water_dimer, write_model_file

from openjmp.calculator import JMPCalculator
from openjmp.data.record import InvalidStructureError
from openjmp.inference import HeadError, UnknownElementError, load_predictor


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return write_model_file(tmp_path_factory.mktemp("calc") / "ef.pt", cutoff=5.0,
                            max_neighbors=120)


@pytest.fixture(scope="module")
def calc64(model_path):
    return JMPCalculator(model_path, dtype="float64")


def _energy(calc, atoms):
    a = atoms.copy()
    a.calc = calc
    return a.get_potential_energy()


def _fd_forces(calc, atoms, components, h=1e-4):
    out = []
    for i, k in components:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        out.append(-(_energy(calc, plus) - _energy(calc, minus)) / (2 * h))
    return np.array(out)


CASES = {
    "molecule": water_dimer,
    "slab_TTT": lambda: slab((True, True, True)),
    "slab_TTF": lambda: slab((True, True, False)),
    "triclinic_bulk": triclinic_bulk,
}


@pytest.mark.parametrize("case", list(CASES))
def test_forces_match_finite_differences(calc64, case):
    atoms = CASES[case]()
    atoms.calc = calc64
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1e-3  # a non-trivial check
    rng = np.random.default_rng(0)
    comps = [(int(i), int(k)) for i, k in zip(rng.integers(0, len(atoms), 5), rng.integers(0, 3, 5))]
    fd = _fd_forces(calc64, atoms, comps)
    analytic = np.array([forces[i, k] for i, k in comps])
    np.testing.assert_allclose(analytic, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["slab_TTT", "triclinic_bulk"])
def test_stress_matches_strain_derivative(calc64, case, fd_stress):
    atoms = CASES[case]()
    atoms.calc = calc64
    stress = atoms.get_stress()  # Voigt, ASE sign
    assert np.abs(stress).max() > 1e-4
    fd = fd_stress(lambda a: _energy(calc64, a), atoms)
    np.testing.assert_allclose(stress, fd, rtol=1e-4, atol=1e-7)


def test_stress_needs_full_periodicity(calc64):
    atoms = slab((True, True, False))
    atoms.calc = calc64
    with pytest.raises(PropertyNotImplementedError, match="fully periodic"):
        atoms.get_stress()


def test_positions_change_rebuilds_graph(calc64):
    """Moving an atom across the cutoff must change the neighbours (graph rebuilt each call)."""
    atoms = water_dimer()
    atoms.calc = calc64
    e_close = atoms.get_potential_energy()
    far = atoms.copy()
    far.positions[3:] += [20.0, 0.0, 0.0]  # second water beyond the 5 Å cutoff
    far.calc = calc64
    e_far = far.get_potential_energy()
    single = atoms[:3].copy()
    single.calc = calc64
    other = atoms[3:].copy()
    other.calc = calc64
    # with the second molecule out of range, the energy is the sum of the two isolated ones
    # (energy_mean is added once per structure)
    isolated = single.get_potential_energy() + other.get_potential_energy()
    assert abs(e_far - (isolated - calc64.predictor.energy_mean)) < 1e-8
    assert abs(e_far - e_close) > 1e-6
    # the same calculator object, positions moved back: same energy as at first
    atoms.positions[0] += 0.0
    assert abs(atoms.get_potential_energy() - e_close) < 1e-10


def test_nve_energy_conservation(tmp_path):
    """NVE (velocity Verlet, 0.25 fs, 200 steps, 300 K start, float64) on a water dimer: the
    total energy stays within 5e-4 eV of its start (measured 8.6e-5 eV; 1.9e-4 eV over 400
    steps). The graph cutoff is 12 Å = the radial envelope's cutoff: with a smaller graph cutoff
    an edge leaving the graph makes the energy jump (measured 0.08 eV with a 5 Å cutoff), which
    is a property of the model, not of the integrator or the forces."""
    path = write_model_file(tmp_path / "nve.pt", cutoff=12.0, max_neighbors=120)
    calc = JMPCalculator(path, dtype="float64")
    atoms = water_dimer()
    atoms.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    totals = [atoms.get_total_energy()]
    for _ in range(20):
        dyn.run(10)
        totals.append(atoms.get_total_energy())
    totals = np.array(totals)
    drift = float(np.abs(totals - totals[0]).max())
    ke = atoms.get_kinetic_energy()
    assert ke > 1e-3  # the atoms moved
    assert drift < 5e-4, f"max |E_tot - E_tot(0)| over 200 steps = {drift:.2e} eV"


def test_head_selection_and_errors(tmp_path, model_path):
    with pytest.raises(HeadError, match="no head named 'nope'.*energy"):
        JMPCalculator(model_path, head="nope")
    no_energy = write_model_file(tmp_path / "none.pt", kind="none")
    with pytest.raises(HeadError, match="no energy head"):
        JMPCalculator(no_energy)
    pre = write_model_file(tmp_path / "pre.pt", kind="pretrain", cutoff=5.0)
    # default force mode: the head's trained convention (pretrain heads: direct), as openjmp predict
    direct = JMPCalculator(pre)
    assert direct.head == "oc20"
    assert direct.predictor.forces == "direct" == load_predictor(pre).forces  # = openjmp predict
    calc = JMPCalculator(pre, forces="gradient")
    atoms = water_dimer()
    atoms.calc = direct
    f_direct = atoms.get_forces()
    atoms.calc = calc
    f_grad = atoms.get_forces()
    assert f_direct.shape == f_grad.shape and not np.allclose(f_direct, f_grad)


def test_unknown_elements_warn_or_refuse(model_path):
    atoms = water_dimer()
    atoms.numbers[0] = 16  # S is not among the head's elements
    atoms.calc = JMPCalculator(model_path, unknown_elements="warn")
    with pytest.warns(UserWarning, match=r"Z=\[16\] not in the training elements"):
        atoms.get_potential_energy()
    atoms.calc = JMPCalculator(model_path, unknown_elements="error")
    with pytest.raises(UnknownElementError, match=r"Z=\[16\]"):
        atoms.get_potential_energy()


def test_nan_positions_are_refused(calc64):
    atoms = water_dimer()
    atoms.positions[2, 1] = np.nan
    atoms.calc = calc64
    with pytest.raises(InvalidStructureError, match="non-finite.*atom 2"):
        atoms.get_potential_energy()


def test_float32_close_to_float64(model_path, calc64):
    atoms = slab()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.calc = JMPCalculator(model_path, dtype="float32")
        e32, f32 = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = calc64
    e64, f64 = atoms.get_potential_energy(), atoms.get_forces()
    assert abs(e32 - e64) < 1e-2
    np.testing.assert_allclose(f32, f64, atol=1e-3)


def test_lazy_export():
    import subprocess
    import sys

    import openjmp

    assert openjmp.JMPCalculator is JMPCalculator
    code = "import sys, openjmp; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # `import openjmp` stays light
