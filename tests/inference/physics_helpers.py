"""Models, structures and checks for the force-physics acceptance tests (issue 15).

* :func:`shipped_mini_file`: the packaged ``openjmp-mini`` weights (``OPENJMP_TEST_MINI`` may name
  another file, e.g. a stand-in trained with the same architecture, to try the tests on it).
* :func:`write_random_model_file`: a randomly initialised model of a preset (JMP-S: the published
  backbone sizes) with one gradient-force energy head, saved as an openjmp model file with the
  graph settings it is given (default: those of ``configs/pretrain/mini.yaml``, whose caps do not
  truncate at these cutoffs).
* Ideal crystals and molecules built with ASE, and central finite differences of the energy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from ase import Atoms
from ase.build import bulk, graphene

from openjmp.calculator import JMPCalculator
from openjmp.models.registry import create_model, resolve_pretrained_file, save_model_file

ROOT = Path(__file__).resolve().parents[2]
MINI_CONFIG = ROOT / "configs" / "pretrain" / "mini.yaml"
#: environment variable naming a model file to use instead of the packaged openjmp-mini
ENV_MINI = "OPENJMP_TEST_MINI"


def shipped_mini_file() -> Path:
    """Path of the packaged openjmp-mini model file (or of ``$OPENJMP_TEST_MINI``)."""
    override = os.environ.get(ENV_MINI)
    return Path(override) if override else resolve_pretrained_file("openjmp-mini")


def mini_graph_settings() -> dict:
    """The graph settings (cutoffs in Å, neighbour caps) of configs/pretrain/mini.yaml."""
    config = yaml.safe_load(MINI_CONFIG.read_text())
    return dict(config["datasets"][0]["graph"])


def mini_smooth_backbone() -> dict:
    """The smooth-basis backbone options of configs/pretrain/mini.yaml (``sbf``, ``rbf_cutoffs``)."""
    backbone = yaml.safe_load(MINI_CONFIG.read_text())["model"]["backbone"]
    return {"sbf": backbone["sbf"], "rbf_cutoffs": backbone["rbf_cutoffs"]}


def write_random_model_file(path: Path, preset: str = "jmp-s", graph: dict | None = None,
                            energy_std: float = 1.0, seed: int = 0, **backbone) -> Path:
    """Save a randomly initialised ``preset`` model (``backbone`` overrides its backbone options)
    with one ``energy_forces`` head ``energy`` (forces = −dE/dx; energy in eV is the model
    output × ``energy_std``) that builds its graphs with ``graph`` (default
    :func:`mini_graph_settings`)."""
    torch.manual_seed(seed)
    model = create_model(preset, num_pretrain_tasks=0, finetune_energy=True, regress_forces=False,
                         direct_forces=False, **backbone)
    head = {"kind": "energy_forces", "energy_module": "out_energy", "force_module": None,
            "forces": "gradient", "reduction": "sum", "graph": graph or mini_graph_settings(),
            "elements": None}
    save_model_file(model, path, normalization={"energy": {"energy_std": energy_std}},
                    heads={"energy": head})
    return path


def calculator(path: Path, dtype: str = "float32") -> JMPCalculator:
    """JMPCalculator of ``path`` with gradient forces (−dE/dx, also for pre-training heads, whose
    default is their direct-force MLP) that ignores elements outside the head's training set."""
    return JMPCalculator(path, dtype=dtype, forces="gradient", unknown_elements="ignore")


# ------------------------------------------------------------------------------- structures


def ideal_crystals() -> dict[str, Atoms]:
    """Ideal crystals (experimental lattice constants, Å) on which every force vanishes by
    symmetry: fcc Cu 2×2×2 cubic, bcc Fe 2×2×2, diamond Si, rocksalt NaCl, hcp Mg 2×2×2,
    graphene 3×3 (10 Å vacuum)."""
    return {
        "fcc Cu": bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2),
        "bcc Fe": bulk("Fe", "bcc", a=2.87, cubic=True).repeat(2),
        "diamond Si": bulk("Si", "diamond", a=5.43, cubic=True),
        "rocksalt NaCl": bulk("NaCl", "rocksalt", a=5.64, cubic=True),
        "hcp Mg": bulk("Mg", "hcp", a=3.21, c=5.21).repeat(2),
        "graphene": graphene(vacuum=10.0).repeat((3, 3, 1)),
    }


def small_ideal_crystals() -> dict[str, Atoms]:
    """The crystals of :func:`ideal_crystals` in their smallest cells (1-8 atoms), for large
    models: primitive fcc Cu, bcc Fe, diamond Si, rocksalt NaCl and hcp Mg, graphene 2×2."""
    return {
        "fcc Cu": bulk("Cu", "fcc", a=3.61),
        "bcc Fe": bulk("Fe", "bcc", a=2.87),
        "diamond Si": bulk("Si", "diamond", a=5.43, cubic=True),
        "rocksalt NaCl": bulk("NaCl", "rocksalt", a=5.64),
        "hcp Mg": bulk("Mg", "hcp", a=3.21, c=5.21),
        "graphene": graphene(vacuum=10.0).repeat((2, 2, 1)),
    }


def rattled(atoms: Atoms, stdev: float, seed: int) -> Atoms:
    """A copy of ``atoms`` with Gaussian displacements of ``stdev`` Å per component."""
    out = atoms.copy()
    out.rattle(stdev=stdev, seed=seed)
    return out


# ------------------------------------------------------------------------------- checks


def max_force(atoms: Atoms) -> float:
    """max |F_ij| in eV/Å of ``atoms`` with its calculator."""
    return float(np.abs(atoms.get_forces()).max())


def off_diagonal_stress(atoms: Atoms) -> float:
    """max |σ_ij|, i ≠ j, of the stress tensor in eV/Å³."""
    stress = atoms.get_stress(voigt=False)
    return float(np.abs(stress - np.diag(np.diag(stress))).max())


def finite_difference_forces(atoms: Atoms, indices: list[int], step: float = 1e-3) -> np.ndarray:
    """−dE/dx of the listed atoms by central differences of ``atoms.get_potential_energy()``
    with displacements of ``step`` Å: (len(indices), 3) in eV/Å."""
    out = np.zeros((len(indices), 3))
    base = atoms.get_positions()
    for row, i in enumerate(indices):
        for axis in range(3):
            energies = []
            for sign in (1.0, -1.0):
                moved = base.copy()
                moved[i, axis] += sign * step
                atoms.set_positions(moved)
                energies.append(atoms.get_potential_energy())
            out[row, axis] = -(energies[0] - energies[1]) / (2 * step)
    atoms.set_positions(base)
    return out


def assert_forces_match_finite_differences(atoms: Atoms, indices: list[int], atol: float = 1e-4,
                                           rtol: float = 1e-3) -> None:
    """Analytic forces of ``atoms`` (its calculator) equal central finite differences of its
    energy on ``indices``, to ``atol`` eV/Å + ``rtol`` × |F|."""
    analytic = atoms.get_forces()[indices]
    numeric = finite_difference_forces(atoms, indices)
    np.testing.assert_allclose(analytic, numeric, atol=atol, rtol=rtol)


def worst(values: dict[str, float], limit: float) -> dict[str, float]:
    """The entries of ``values`` above ``limit`` (empty when all pass): readable assert messages."""
    return {name: v for name, v in values.items() if not v <= limit}


def measure(structures: dict[str, Atoms], calc, quantity: Callable[[Atoms], float]) -> dict[str, float]:
    """``quantity(atoms)`` for each structure, computed with ``calc``."""
    out = {}
    for name, atoms in structures.items():
        atoms.calc = calc
        out[name] = quantity(atoms)
    return out
