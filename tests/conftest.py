import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

#: the read-only folder handed to the project (reference fixtures, benchmark batch); beside the
#: checkout unless OPENJMP_SHARED names another place (a machine where the checkout travels alone)
SHARED = Path(os.environ.get("OPENJMP_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test: run with --runslow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared folder is missing at {SHARED} (CI provides it beside the checkout)")
    return SHARED


def finite_difference_stress(energy, atoms, h: float = 1e-5):
    """(1/V) dE/dε in ASE's Voigt order (xx yy zz yz xz xy) by central differences of symmetric
    strains of cell and positions; ``energy(atoms) -> eV`` (ASE's sign: positive = tensile)."""
    import numpy as np

    volume = atoms.get_volume()
    out = []
    for i, j in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]:
        sym = np.zeros((3, 3))
        sym[i, j] = sym[j, i] = 1.0 if i == j else 0.5
        energies = []
        for sign in (1, -1):
            strained = atoms.copy()
            deform = np.eye(3) + sign * h * sym
            strained.set_cell(np.asarray(atoms.cell) @ deform, scale_atoms=False)
            strained.positions = atoms.positions @ deform
            energies.append(energy(strained))
        out.append((energies[0] - energies[1]) / (2 * h) / volume)
    return np.array(out)


@pytest.fixture
def fd_stress():
    """:func:`finite_difference_stress` (conftest functions are not importable from test files)."""
    return finite_difference_stress
