"""Forces a simulation can trust (issue 15): symmetric geometries, finite differences, relaxation.

Models: the shipped ``openjmp-mini`` (smooth basis) and randomly initialised JMP-S-size models
with the original ``legendre_outer`` basis and with the smooth one, all with the non-truncating
graph settings of configs/pretrain/mini.yaml; float32 unless the check needs float64 (finite
differences). Units: eV, Å.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.optimize import FIRE
from physics_helpers import (
    ROOT,
    assert_forces_match_finite_differences,
    calculator,
    ideal_crystals,
    max_force,
    measure,
    mini_smooth_backbone,
    off_diagonal_stress,
    rattled,
    shipped_mini_file,
    worst,
    write_random_model_file,
)

from openjmp.calculator import JMPCalculator
from openjmp.models.gemnet_oc.bases import cos_dihedral, degenerate_tolerance

#: symmetry-forbidden forces in float32, eV/Å; off-diagonal stress of cubic crystals, eV/Å³
FORCE_LIMIT = 1e-3
STRESS_LIMIT = 1e-4
CUBIC = ("fcc Cu", "bcc Fe", "diamond Si", "rocksalt NaCl")
MODELS = ("openjmp-mini", "jmp-s-original", "jmp-s-smooth")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict:
    """Model file per name of :data:`MODELS` (JMP-S files written once per module)."""
    folder = tmp_path_factory.mktemp("physics-models")
    return {
        "openjmp-mini": shipped_mini_file(),
        "jmp-s-original": write_random_model_file(folder / "jmp_s_original.pt"),
        "jmp-s-smooth": write_random_model_file(folder / "jmp_s_smooth.pt", **mini_smooth_backbone()),
    }


# ------------------------------------------------------------------------------- ideal structures


@pytest.mark.parametrize("model", MODELS)
def test_ideal_crystals_have_no_forces(model_files, model):
    forces = measure(ideal_crystals(), calculator(model_files[model]), max_force)
    assert not worst(forces, FORCE_LIMIT), forces


@pytest.mark.parametrize("model", MODELS)
def test_cubic_crystals_have_no_shear_stress(model_files, model):
    cubic = {name: atoms for name, atoms in ideal_crystals().items() if name in CUBIC}
    stresses = measure(cubic, calculator(model_files[model]), off_diagonal_stress)
    assert not worst(stresses, STRESS_LIMIT), stresses


def ring_forbidden_forces(atoms: Atoms) -> np.ndarray:
    """Per atom of a planar ring molecule (benzene): the force components symmetry forbids,
    (tangential in the ring plane, out of plane), eV/Å."""
    centred = atoms.positions - atoms.positions.mean(axis=0)
    normal = np.linalg.svd(centred)[2][-1]
    tangent = np.cross(normal, centred)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    forces = atoms.get_forces()
    return np.stack([np.sum(forces * tangent, axis=1), forces @ normal], axis=1)


def linear_forbidden_forces(atoms: Atoms) -> np.ndarray:
    """Per atom of a linear molecule (CO2, C2H2): the force perpendicular to its axis, eV/Å."""
    centred = atoms.positions - atoms.positions.mean(axis=0)
    axis = np.linalg.svd(centred)[2][0]
    forces = atoms.get_forces()
    return forces - np.outer(forces @ axis, axis)


MOLECULES = {"C6H6": ring_forbidden_forces, "CO2": linear_forbidden_forces,
             "C2H2": linear_forbidden_forces}


@pytest.mark.parametrize("model", MODELS)
def test_ideal_molecules_have_no_forbidden_forces(model_files, model):
    calc = calculator(model_files[model])
    forbidden, total = {}, {}
    for name, forbidden_components in MOLECULES.items():
        atoms = molecule(name)
        atoms.calc = calc
        forbidden[name] = float(np.abs(forbidden_components(atoms)).max())
        total[name] = float(np.abs(atoms.get_forces().sum(axis=0)).max())
    assert not worst(forbidden, FORCE_LIMIT), forbidden
    assert not worst(total, FORCE_LIMIT), total


# ------------------------------------------------------------------------------- gradients


RATTLED = {"diamond Si": lambda: ideal_crystals()["diamond Si"], "ethanol": lambda: molecule("CH3CH2OH")}


@pytest.mark.parametrize("model", ("openjmp-mini", "jmp-s-original"))
@pytest.mark.parametrize("structure", RATTLED)
def test_forces_equal_finite_differences_of_the_energy(model_files, model, structure):
    atoms = rattled(RATTLED[structure](), stdev=0.02, seed=3)
    atoms.calc = calculator(model_files[model], dtype="float64")
    assert_forces_match_finite_differences(atoms, indices=[0, len(atoms) - 1])


def test_collinear_chain_has_bounded_forces_with_the_original_basis(model_files):
    """A periodic chain along x with alternating bonds (1.2, 1.4 Å): every triplet is collinear;
    forces across the chain are forbidden and, with the original dihedral, must stay ~0."""
    chain = Atoms("C4", positions=[[0.0, 5, 5], [1.2, 5, 5], [2.6, 5, 5], [3.8, 5, 5]],
                  cell=[5.2, 10.0, 10.0], pbc=True)
    chain.calc = calculator(model_files["jmp-s-original"])
    forces = chain.get_forces()
    assert np.isfinite(forces).all()
    assert np.abs(forces[:, 1:]).max() <= FORCE_LIMIT, forces
    assert np.abs(forces[:, 0]).max() > 10 * FORCE_LIMIT  # the bonds are not at equilibrium


def dihedral_and_gradients(u: torch.Tensor, w: torch.Tensor):
    """(cos_dihedral(u, w), d/du, d/dw) of one pair of (1, 3) vectors."""
    u, w = u.clone().requires_grad_(True), w.clone().requires_grad_(True)
    value = cos_dihedral(u, w)
    grad_u, grad_w = torch.autograd.grad(value.sum(), (u, w))
    return value.detach(), grad_u, grad_w


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("sine", (0.0, 1e-3, 0.5), ids=("zero", "1e-3 tol", "0.5 tol"))
def test_cos_dihedral_is_zero_and_flat_where_undefined(dtype, sine):
    """|u| = ``sine`` × the tolerance below which the dihedral's plane is unresolved."""
    u = torch.tensor([[0.3, -0.2, 0.5]], dtype=dtype)
    u = u / u.norm() * sine * degenerate_tolerance(dtype)
    w = torch.tensor([[0.1, 0.6, -0.4]], dtype=dtype)
    for a, b in ((u, w), (w, u)):
        value, grad_a, grad_b = dihedral_and_gradients(a, b)
        assert value.item() == 0.0
        assert torch.count_nonzero(grad_a) == 0 and torch.count_nonzero(grad_b) == 0


def test_cos_dihedral_equals_the_original_elsewhere():
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(64, 3, dtype=torch.float64, generator=generator) * 0.5
    w = torch.randn(64, 3, dtype=torch.float64, generator=generator) * 0.5
    original = torch.cos(torch.atan2(torch.linalg.cross(u, w).norm(dim=-1), torch.sum(u * w, dim=-1)))
    torch.testing.assert_close(cos_dihedral(u, w), original, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cos_dihedral(u.float(), w.float()), original.float())
    _, grad_u, grad_w = dihedral_and_gradients(u, w)
    assert torch.isfinite(grad_u).all() and torch.isfinite(grad_w).all()


# ------------------------------------------------------------------------------- relaxation


def fire_displacement(path, forces: str) -> float:
    """Largest distance (Å) from its lattice site of an atom of fcc Cu 2×2×2 (a = 3.61 Å)
    rattled by 0.1 Å and relaxed by FIRE to fmax 1e-3 eV/Å (mean shift removed)."""
    ideal = ideal_crystals()["fcc Cu"]
    atoms = rattled(ideal, stdev=0.1, seed=7)
    atoms.calc = JMPCalculator(path, dtype="float32", forces=forces, unknown_elements="ignore")
    assert FIRE(atoms, logfile=None).run(fmax=1e-3, steps=300)
    displacement = atoms.positions - ideal.positions
    displacement -= displacement.mean(axis=0)
    return float(np.linalg.norm(displacement, axis=1).max())


def test_fire_returns_rattled_fcc_copper_to_its_lattice_sites(model_files):
    """With openjmp-mini's default forces (the pre-training heads' direct-force MLP, the forces
    it was trained on) FIRE returns every atom to its site."""
    assert JMPCalculator(model_files["openjmp-mini"]).predictor.forces == "direct"
    assert fire_displacement(model_files["openjmp-mini"], "direct") <= 0.01


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "-dE/dx of openjmp-mini's pre-training energy head: that head was fitted to energies only "
    "and pre-training saw no bulk metal, so ideal fcc Cu is a stationary point but not a minimum "
    "of it (FIRE ends 0.34 Å from the sites; a head-only conservative fine-tune on mini-oc20 gave "
    "0.29 Å). Needs bulk data and force-trained energy heads in pre-training (docs/forces.md)"))
def test_fire_with_gradient_forces_of_the_pretraining_energy_head(model_files):
    assert fire_displacement(model_files["openjmp-mini"], "gradient") <= 0.01


# ------------------------------------------------------------------------------- MD benchmark


@pytest.mark.slow
def test_nve_drift_benchmark_writes_drift_numbers_and_plot(tmp_path):
    """benchmarks/nve_drift.py with 50 steps per system: the JSON fields and the plot."""
    out, plot = tmp_path / "nve.json", tmp_path / "nve.png"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nve_drift.py"), "--steps", "50",
                    "--model", str(shipped_mini_file()), "--out", str(out), "--plot", str(plot)],
                   check=True, timeout=900)
    results = json.loads(out.read_text())
    assert {"cpu_model", "torch", "torch_threads"} <= set(results["machine"])
    assert results["config"]["dtype"] == "float32" and results["config"]["forces"] == "gradient"
    systems = results["systems"]
    assert {name: r["natoms"] for name, r in systems.items()} == {"cu108": 108, "ethanol": 9}
    for r in systems.values():
        assert r["steps"] == 50 and len(r["trace_per_atom_eV"]["total"]) == 51
        for key in ("drift_meV_per_atom_per_ps", "total_energy_spread_meV_per_atom",
                    "mean_temperature_K", "wall_s", "ms_per_step"):
            assert np.isfinite(r[key]), key
        assert r["mean_temperature_K"] > 0 and isinstance(r["within_target"], bool)
    assert plot.stat().st_size > 0
