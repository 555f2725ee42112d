"""Helpers for fine-tuning tests: small EMT-labelled molecule files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ase.io

#: four compositions whose element-count matrix has full rank over H, C, N, O
MOLECULES = ("H2O", "NH3", "CH4", "C2H6")


def write_emt_molecules(path: Path, count: int, info: Callable[[int, object], dict] | None = None) -> Path:
    """``count`` rattled molecules (cycling through `MOLECULES`) with EMT energies and forces,
    written as extxyz; ``info(i, atoms)`` adds per-frame graph-level targets."""
    from ase.build import molecule
    from ase.calculators.emt import EMT

    frames = []
    for i in range(count):
        m = molecule(MOLECULES[i % len(MOLECULES)])
        m.rattle(0.04, seed=i)
        m.calc = EMT()
        m.get_potential_energy()
        m.get_forces()
        if info is not None:
            m.info.update(info(i, m))
        frames.append(m)
    ase.io.write(path, frames)
    return path
