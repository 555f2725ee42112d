"""Unit constants. Internal units: Å, eV, eV/Å, eV/Å³, e·Å.

Conversions happen once, at the reader (or writer) boundary, through these named constants,
which come from ``ase.units`` (CODATA 2014) so that every part of the code agrees.
"""

from __future__ import annotations

from ase import units as _u

#: 1 Hartree in eV
HARTREE_TO_EV: float = float(_u.Hartree)
#: 1 bohr in Å
BOHR_TO_ANGSTROM: float = float(_u.Bohr)
#: 1 kcal/mol in eV
KCAL_PER_MOL_TO_EV: float = float(_u.kcal / _u.mol)
#: 1 Hartree/bohr in eV/Å
HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM: float = HARTREE_TO_EV / BOHR_TO_ANGSTROM
#: 1 Debye in e·Å
DEBYE_TO_E_ANGSTROM: float = float(_u.Debye)
#: 1 bohr³ in Å³
BOHR3_TO_ANGSTROM3: float = BOHR_TO_ANGSTROM**3
#: 1 bohr² in Å²
BOHR2_TO_ANGSTROM2: float = BOHR_TO_ANGSTROM**2
#: 1 GPa in eV/Å³
GPA_TO_EV_PER_ANGSTROM3: float = float(_u.GPa)
