"""Reading pymatgen ``Structure`` dicts (MSON) without pymatgen."""

from __future__ import annotations

import numpy as np

from openjmp.data.readers.base import DataFormatError, symbol_to_z


def structure_arrays(structure: dict, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(atomic numbers (n,), Cartesian positions (n,3) Å, cell (3,3) Å rows = lattice vectors).

    The element of a site is ``species[0]["element"]`` (charged species such as ``"O2-"`` keep
    only their letters); disordered sites (several species or occupancy < 1) are refused.
    Positions come from ``xyz`` when present, else from fractional ``abc`` × lattice.
    """
    if not isinstance(structure, dict) or "lattice" not in structure or "sites" not in structure:
        raise DataFormatError(
            f"{where}: not a pymatgen Structure dict (needs 'lattice' and 'sites')"
        )
    try:
        cell = np.asarray(structure["lattice"]["matrix"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{where}: bad lattice matrix: {exc}") from None
    if cell.shape != (3, 3):
        raise DataFormatError(f"{where}: lattice matrix has shape {cell.shape}, expected (3, 3)")
    sites = structure["sites"]
    z = np.empty(len(sites), dtype=np.int64)
    pos = np.empty((len(sites), 3))
    for i, site in enumerate(sites):
        species = site.get("species") or []
        if len(species) != 1 or float(species[0].get("occu", 1.0)) != 1.0:
            raise DataFormatError(
                f"{where}: site {i} is disordered (species {species}); not supported"
            )
        element = "".join(c for c in str(species[0].get("element", "")) if c.isalpha())
        z[i] = symbol_to_z(element, f"{where}: site {i}")
        if "xyz" in site:
            pos[i] = np.asarray(site["xyz"], dtype=np.float64)
        elif "abc" in site:
            pos[i] = np.asarray(site["abc"], dtype=np.float64) @ cell
        else:
            raise DataFormatError(f"{where}: site {i} has neither 'xyz' nor 'abc'")
    return z, pos, cell
