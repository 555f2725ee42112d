"""The two levels of theory of the mini suite, behind small wrappers.

* EMT (``ase.calculators.emt``): metals Al, Cu, Ag, Au, Ni, Pd, Pt and the light adsorbate
  elements H, C, N, O. Energies in eV, forces in eV/Å.
* GFN2-xTB through ``tblite.interface`` (not ``tblite.ase``) so that one SCF result gives
  energy, gradient, dipole, charges *and* orbital energies. The orbital energies are read in
  exactly one place, `frontier_orbitals`.

Both are used single-threaded (``OMP_NUM_THREADS=1``; see `common.SINGLE_THREAD_ENV`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Bohr, Hartree

from openjmp.data.generate.common import SINGLE_THREAD_ENV, SkipStructure

for _k, _v in SINGLE_THREAD_ENV.items():
    # only matters if tblite's OpenMP runtime is not initialised yet in this process
    os.environ.setdefault(_k, _v)

#: elements ASE's EMT has parameters for (atomic numbers)
EMT_ELEMENTS: frozenset[int] = frozenset({1, 6, 7, 8, 13, 28, 29, 46, 47, 78, 79})
#: the metals among them
EMT_METALS: tuple[str, ...] = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")

#: GFN2 settings used everywhere (recorded in the dataset cards)
XTB_METHOD = "GFN2-xTB"
XTB_ACCURACY = 1.0
XTB_MAX_ITER = 250
XTB_ELECTRONIC_TEMPERATURE_K = 300.0


def check_emt_elements(numbers: np.ndarray, what: str = "structure") -> None:
    """Raise `SkipStructure` (``emt-element``) if any element lacks EMT parameters."""
    bad = sorted({int(z) for z in np.asarray(numbers)} - EMT_ELEMENTS)
    if bad:
        raise SkipStructure(f"emt-element: {what} contains Z={bad}, which EMT does not support")


def emt_calculator():
    from ase.calculators.emt import EMT

    return EMT()


@dataclass
class XTBResult:
    """One GFN2-xTB single point.

    energy: total energy, eV. forces: (n,3) eV/Å. dipole: (3,) e·Å. charges: (n,) e (Mulliken).
    homo, lumo: orbital energies, eV (NaN if unavailable).
    """

    energy: float
    forces: np.ndarray
    dipole: np.ndarray
    charges: np.ndarray
    homo: float
    lumo: float


def frontier_orbitals(result) -> tuple[float, float]:
    """HOMO and LUMO energies (Hartree) of a ``tblite.interface.Result``.

    tblite's ASE calculator does not expose orbital energies; its ``Result`` object does
    (``"orbital-energies"`` in Hartree, ascending, and ``"orbital-occupations"``, each 0..2 for a
    closed-shell run, or per spin channel). The number of occupied orbitals is taken from the
    rounded electron count, so a smeared (Fermi) occupation at 300 K does not move the HOMO.
    Returns (NaN, NaN) if the result lacks them.
    """
    try:
        eps = np.asarray(result.get("orbital-energies"), dtype=np.float64).reshape(-1)
        occ = np.asarray(result.get("orbital-occupations"), dtype=np.float64)
    except Exception:  # noqa: BLE001 - tblite raises its own runtime error type
        return float("nan"), float("nan")
    if occ.ndim == 2:  # spin channels: total occupation per spatial orbital
        occ = occ.sum(axis=0)
    n_electrons = int(round(float(occ.sum())))
    n_occupied = (n_electrons + 1) // 2
    if n_occupied < 1 or n_occupied >= eps.size:
        return float("nan"), float("nan")
    order = np.sort(eps)
    return float(order[n_occupied - 1]), float(order[n_occupied])


class GFN2:
    """GFN2-xTB for one fixed set of atoms (neutral, closed shell); positions may change.

    Successive calls restart the SCF from the previous density (faster MD / relaxations);
    the converged results do not depend on that guess beyond the SCF tolerance.
    """

    def __init__(self, numbers: np.ndarray, charge: int = 0, max_iter: int = XTB_MAX_ITER):
        from tblite.interface import Calculator as _TBLite

        self.numbers = np.asarray(numbers, dtype=np.int64)
        self._calc_cls = _TBLite
        self._calc = None
        self._restart = None
        self.charge = charge
        self.max_iter = max_iter

    def _make(self, positions_bohr: np.ndarray):
        calc = self._calc_cls(XTB_METHOD, self.numbers, positions_bohr, charge=float(self.charge))
        calc.set("verbosity", 0)
        calc.set("accuracy", XTB_ACCURACY)
        calc.set("max-iter", self.max_iter)
        calc.set("temperature", XTB_ELECTRONIC_TEMPERATURE_K * 3.166808578545117e-06)  # K -> Ha
        return calc

    def compute(self, positions: np.ndarray, orbitals: bool = False) -> XTBResult:
        """Single point at ``positions`` (n,3) Å. Raises `SkipStructure` (``xtb-scf``) if the
        SCF fails."""
        from tblite.exceptions import TBLiteRuntimeError, TBLiteValueError

        pos_bohr = np.asarray(positions, dtype=np.float64) / Bohr
        try:
            if self._calc is None:
                self._calc = self._make(pos_bohr)
            else:
                self._calc.update(pos_bohr)
            try:
                res = self._calc.singlepoint(self._restart) if self._restart else \
                    self._calc.singlepoint()
            except TBLiteRuntimeError:
                if self._restart is None:
                    raise
                # the previous geometry's density can be a bad guess after a large step:
                # retry once from the default (superposition of atomic densities) guess
                self._restart = None
                res = self._calc.singlepoint()
        except (TBLiteRuntimeError, TBLiteValueError) as exc:
            self._restart = None
            raise SkipStructure(f"xtb-scf: {exc}".replace("\n", " ")[:300]) from exc
        self._restart = res
        energy = float(res.get("energy")) * Hartree
        forces = -np.asarray(res.get("gradient"), dtype=np.float64) * (Hartree / Bohr)
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            self._restart = None
            raise SkipStructure("xtb-scf: non-finite energy or gradient")
        homo = lumo = float("nan")
        if orbitals:
            homo_ha, lumo_ha = frontier_orbitals(res)
            homo, lumo = homo_ha * Hartree, lumo_ha * Hartree
        return XTBResult(
            energy=energy,
            forces=forces,
            dipole=np.asarray(res.get("dipole"), dtype=np.float64) * Bohr,
            charges=np.asarray(res.get("charges"), dtype=np.float64),
            homo=homo,
            lumo=lumo,
        )


class GFN2Calculator(Calculator):
    """ASE calculator around `GFN2` (for ASE's MD, optimisers and NEB)."""

    implemented_properties = ["energy", "free_energy", "forces", "dipole", "charges"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._gfn2: GFN2 | None = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        numbers = self.atoms.get_atomic_numbers()
        if self._gfn2 is None or not np.array_equal(self._gfn2.numbers, numbers):
            self._gfn2 = GFN2(numbers)
        res = self._gfn2.compute(self.atoms.get_positions())
        self.results = {
            "energy": res.energy,
            "free_energy": res.energy,
            "forces": res.forces,
            "dipole": res.dipole,
            "charges": res.charges,
        }
