"""`AtomsRecord`: one atomic structure with its labels, in openjmp's internal units.

Every reader yields these; every later stage (store, dataset, collate) consumes them.

Units: positions and cell in Å, energy in eV (total energy), forces in eV/Å, stress in eV/Å³
(ASE's sign: positive = tensile), graph-level targets in the unit their reader documents.
Cell rows are lattice vectors. Non-periodic structures may carry any cell (usually zeros);
it is never used for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: smallest allowed distance between two atoms (or an atom and an image of another), Å
MIN_INTERATOMIC_DISTANCE = 1e-2
#: largest atomic number the embedding knows (JMP embeds 120 elements; Og = 118 is the last real one)
MAX_ATOMIC_NUMBER = 118

# `ase.Atoms.info` keys used to carry record metadata through ASE files losslessly.
_INFO_SOURCE = "openjmp_source"
_INFO_DATASET = "openjmp_dataset"


class InvalidStructureError(ValueError):
    """A structure (record) is not usable. The message names the record and the problem."""


@dataclass(frozen=True)
class LabelKeys:
    """Where the energy / forces / stress labels of an `ase.Atoms` are (extxyz, ASE db, traj).

    ``None`` (the default) means: the calculator results ASE attaches when it reads a file
    (``energy`` or ``free_energy``, ``forces``, ``stress``), else MACE's reference keys
    ``REF_energy`` / ``REF_forces`` / ``REF_stress``. A key names the label explicitly: an
    ``atoms.info`` entry for energy and stress (Voigt 6, or 9 / 3x3 values), an ``atoms.arrays``
    entry for forces; the calculator's result of the same name also counts (``energy_key=energy``).
    A key given explicitly and absent from a structure leaves that label empty (None).
    Values are taken as stored: eV, eV/Å, eV/Å³.
    """

    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None

    #: fallbacks when a structure has no calculator results (MACE's convention)
    REF = {"energy": "REF_energy", "forces": "REF_forces", "stress": "REF_stress"}

    def labels(self, atoms) -> tuple[Any, Any, Any, set[str]]:
        """``(energy, forces, stress, info/array keys used as labels)`` of one structure."""
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        used: set[str] = set()

        def find(label: str, key: str | None, where: dict):
            names = [key] if key is not None else [label, *(["free_energy"] if label == "energy" else [])]
            for name in names:
                if results.get(name) is not None:
                    return results[name]
            if key is None:
                key = self.REF[label]
            value = where.get(key)
            if value is not None:
                used.add(key)
            return value

        energy = find("energy", self.energy_key, atoms.info)
        forces = find("forces", self.forces_key, atoms.arrays)
        stress = find("stress", self.stress_key, atoms.info)
        if stress is not None:
            stress = np.asarray(stress, dtype=np.float64)
            stress = stress.reshape(3, 3) if stress.size == 9 else stress
        return energy, forces, stress, used


@dataclass
class AtomsRecord:
    """One structure.

    Attributes:
        atomic_numbers: (n,) int64.
        positions: (n, 3) float64, Å, Cartesian.
        cell: (3, 3) float64, Å, rows are lattice vectors.
        pbc: (3,) bool.
        energy: total energy, eV, or None.
        forces: (n, 3) float64, eV/Å, or None.
        stress: (3, 3) float64, eV/Å³ (ASE sign convention), or None.
        targets: graph-level properties, name → float or float64 array (units per reader).
        tags: (n,) int64 or None (OC20 convention: 0 sub-surface, 1 surface, 2 adsorbate;
            molecules and bulk use 2).
        fixed: (n,) bool or None; True = constrained in the source calculation.
        source: provenance, e.g. ``"file.h5:C2H6O/12"`` (file, group/key, frame).
        dataset: name of the dataset this record belongs to.
    """

    atomic_numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    targets: dict[str, Any] = field(default_factory=dict)
    tags: np.ndarray | None = None
    fixed: np.ndarray | None = None
    source: str = ""
    dataset: str = ""

    def __post_init__(self) -> None:
        self.atomic_numbers = np.asarray(self.atomic_numbers, dtype=np.int64).reshape(-1)
        self.positions = np.asarray(self.positions, dtype=np.float64)
        self.cell = np.asarray(self.cell, dtype=np.float64)
        pbc = np.asarray(self.pbc, dtype=bool)
        self.pbc = np.repeat(pbc.reshape(-1), 3) if pbc.size == 1 else pbc.reshape(-1)
        if self.energy is not None:
            self.energy = float(self.energy)
        if self.forces is not None:
            self.forces = np.asarray(self.forces, dtype=np.float64)
        if self.stress is not None:
            stress = np.asarray(self.stress, dtype=np.float64)
            if stress.shape == (6,):
                from ase.stress import voigt_6_to_full_3x3_stress

                stress = voigt_6_to_full_3x3_stress(stress)
            self.stress = stress
        if self.tags is not None:
            self.tags = np.asarray(self.tags, dtype=np.int64).reshape(-1)
        if self.fixed is not None:
            self.fixed = np.asarray(self.fixed, dtype=bool).reshape(-1)

    # ------------------------------------------------------------------ basic properties
    @property
    def natoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def is_periodic(self) -> bool:
        return bool(self.pbc.any())

    @property
    def name(self) -> str:
        """How error messages refer to this record."""
        where = self.source or "<unnamed record>"
        return f"{self.dataset}:{where}" if self.dataset else where

    # ------------------------------------------------------------------ validation
    def validate(self, min_distance: float = MIN_INTERATOMIC_DISTANCE) -> AtomsRecord:
        """Check that the structure is usable; raise `InvalidStructureError` naming it if not.

        Checks: non-empty; shapes; atomic numbers in 1..118; finite positions, cell, labels;
        for periodic structures a non-singular, positive-volume cell; no two atoms (or an atom
        and a periodic image) closer than ``min_distance`` Å. Returns ``self`` for chaining.
        """

        def fail(problem: str) -> None:
            raise InvalidStructureError(f"{self.name}: {problem}")

        n = self.natoms
        if n == 0:
            fail("empty structure (0 atoms)")
        if self.positions.shape != (n, 3):
            fail(f"positions have shape {self.positions.shape}, expected ({n}, 3)")
        if self.cell.shape != (3, 3):
            fail(f"cell has shape {self.cell.shape}, expected (3, 3)")
        if self.pbc.shape != (3,):
            fail(f"pbc has shape {self.pbc.shape}, expected (3,)")
        bad_z = (self.atomic_numbers <= 0) | (self.atomic_numbers > MAX_ATOMIC_NUMBER)
        if bad_z.any():
            i = int(np.flatnonzero(bad_z)[0])
            fail(
                f"atomic number {int(self.atomic_numbers[i])} of atom {i} is outside 1..{MAX_ATOMIC_NUMBER}"
            )
        if not np.isfinite(self.positions).all():
            i = int(np.flatnonzero(~np.isfinite(self.positions).all(axis=1))[0])
            fail(f"non-finite (NaN/inf) position of atom {i}: {self.positions[i].tolist()}")
        if self.is_periodic:
            if not np.isfinite(self.cell).all():
                fail("non-finite (NaN/inf) cell")
            volume = float(np.linalg.det(self.cell))
            # Singular test on the scale-free volume: |det| / (|a||b||c|) is 0 for a flat cell.
            lengths = np.linalg.norm(self.cell, axis=1)
            scale = float(np.prod(lengths))
            if scale == 0.0 or abs(volume) / scale < 1e-8:
                fail(f"singular cell with pbc={self.pbc.tolist()} (volume {volume:.3g} Å³)")
            if volume < 0:
                fail(
                    f"cell has negative volume {volume:.6g} Å³ (left-handed lattice vectors); "
                    "reorder or negate a lattice vector"
                )
        if self.energy is not None and not math.isfinite(self.energy):
            fail(f"non-finite energy {self.energy}")
        if self.forces is not None:
            if self.forces.shape != (n, 3):
                fail(f"forces have shape {self.forces.shape}, expected ({n}, 3)")
            if not np.isfinite(self.forces).all():
                fail("non-finite (NaN/inf) forces")
        if self.stress is not None:
            if self.stress.shape != (3, 3):
                fail(f"stress has shape {self.stress.shape}, expected (3, 3) or Voigt (6,)")
            if not np.isfinite(self.stress).all():
                fail("non-finite (NaN/inf) stress")
        if self.tags is not None and self.tags.shape != (n,):
            fail(f"tags have shape {self.tags.shape}, expected ({n},)")
        if self.fixed is not None and self.fixed.shape != (n,):
            fail(f"fixed flags have shape {self.fixed.shape}, expected ({n},)")
        close = _closest_pair(self.positions, self.cell, self.pbc, min_distance)
        if close is not None:
            i, j, d = close
            what = "the same position" if d < 1e-8 else f"{d:.3g} Å apart"
            fail(f"atoms {i} and {j} (or a periodic image) are at {what} (minimum {min_distance} Å)")
        return self

    # ------------------------------------------------------------------ ASE conversion
    @classmethod
    def from_atoms(cls, atoms, *, dataset: str = "", source: str = "",
                   label_keys: LabelKeys | None = None) -> AtomsRecord:
        """Build a record from an `ase.Atoms`.

        Energy, forces and stress are read as `LabelKeys` says (default: the attached
        calculator's stored results, never recomputed, else MACE's ``REF_energy`` /
        ``REF_forces`` / ``REF_stress``). Other numeric entries of ``atoms.info`` become
        graph-level ``targets``. Tags are kept when any is non-zero; `FixAtoms` constraints
        become ``fixed``. ``source``/``dataset`` default to what openjmp wrote into ``info``.
        """
        from ase.constraints import FixAtoms

        keys = label_keys or LabelKeys()
        energy, forces, stress, used = keys.labels(atoms)
        fixed = None
        for constraint in atoms.constraints:
            if isinstance(constraint, FixAtoms):
                fixed = np.zeros(len(atoms), dtype=bool) if fixed is None else fixed
                fixed[constraint.index] = True
        info = dict(atoms.info)
        source = str(info.get(_INFO_SOURCE, "")) or source
        dataset = dataset or str(info.get(_INFO_DATASET, ""))
        targets: dict[str, Any] = {}
        for key, value in info.items():
            if key in (_INFO_SOURCE, _INFO_DATASET) or key in used:
                continue
            if isinstance(value, bool):
                targets[key] = float(value)
            elif isinstance(value, (int, float, np.integer, np.floating)):
                targets[key] = float(value)
            elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
                targets[key] = value.astype(np.float64)
        tags = atoms.get_tags()
        return cls(
            atomic_numbers=atoms.get_atomic_numbers(),
            positions=atoms.get_positions(),
            cell=np.asarray(atoms.get_cell()),
            pbc=atoms.get_pbc(),
            energy=energy,
            forces=forces,
            stress=stress,
            targets=targets,
            tags=tags if np.any(tags != 0) else None,
            fixed=fixed,
            source=source,
            dataset=dataset,
        )

    def to_atoms(self):
        """Convert to `ase.Atoms`; labels go to a `SinglePointCalculator`, targets to ``info``."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.constraints import FixAtoms

        atoms = Atoms(
            numbers=self.atomic_numbers,
            positions=self.positions,
            cell=self.cell,
            pbc=self.pbc,
            tags=self.tags,
        )
        if self.fixed is not None and self.fixed.any():
            atoms.set_constraint(FixAtoms(indices=np.flatnonzero(self.fixed)))
        for key, value in self.targets.items():
            atoms.info[key] = value
        if self.source:
            atoms.info[_INFO_SOURCE] = self.source
        if self.dataset:
            atoms.info[_INFO_DATASET] = self.dataset
        results: dict[str, Any] = {}
        if self.energy is not None:
            results["energy"] = self.energy
        if self.forces is not None:
            results["forces"] = self.forces
        if self.stress is not None:
            results["stress"] = self.stress
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms

    def copy(self) -> AtomsRecord:
        def c(x):
            return None if x is None else np.array(x, copy=True)

        return AtomsRecord(
            atomic_numbers=self.atomic_numbers.copy(),
            positions=self.positions.copy(),
            cell=self.cell.copy(),
            pbc=self.pbc.copy(),
            energy=self.energy,
            forces=c(self.forces),
            stress=c(self.stress),
            targets={k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in self.targets.items()},
            tags=c(self.tags),
            fixed=c(self.fixed),
            source=self.source,
            dataset=self.dataset,
        )


def _closest_pair(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, min_distance: float):
    """Return (i, j, distance) of a pair closer than ``min_distance`` Å, or None."""
    n = positions.shape[0]
    if n == 1 and not pbc.any():
        return None
    if not pbc.any() and n <= 256:
        # small molecules: brute force is ~100x faster than a cell list built for a tiny cutoff
        diff = positions[:, None, :] - positions[None, :, :]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        iu = np.triu_indices(n, k=1)
        d = np.sqrt(d2[iu])
        k = int(np.argmin(d))
        if d[k] >= min_distance:
            return None
        return int(iu[0][k]), int(iu[1][k]), float(d[k])
    from vesin import NeighborList

    box = cell if pbc.any() else np.zeros((3, 3))
    # A cell list sized for a 0.01 Å cutoff has millions of bins (slow); use >= 1 Å and filter.
    nl = NeighborList(cutoff=max(min_distance, 1.0), full_list=False)
    i, j, d = nl.compute(positions, box, pbc.tolist(), "ijd")
    close = d < min_distance
    if not close.any():
        return None
    i, j, d = i[close], j[close], d[close]
    k = int(np.argmin(d))
    return int(i[k]), int(j[k]), float(d[k])
