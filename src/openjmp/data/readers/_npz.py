"""Reading ``.npz`` arrays without pickle, with errors that name the file and key."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from openjmp.data.readers.base import DataFormatError, ReaderItem
from openjmp.data.record import AtomsRecord
from openjmp.units import KCAL_PER_MOL_TO_EV


def open_npz(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataFormatError(
            f"{path}: cannot open as .npz (truncated or not npz?): {exc}"
        ) from exc


def npz_array(npz, key: str, path: Path) -> np.ndarray:
    if key not in npz.files:
        raise DataFormatError(f"{path}: missing key {key!r} (keys: {sorted(npz.files)})")
    try:
        return npz[key]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataFormatError(
            f"{path}: cannot read {key!r} (truncated file or pickled object?): {exc}"
        ) from exc


def npz_string(npz, key: str) -> str | None:
    """A string scalar, or None when absent or stored as a pickled object (not read)."""
    if key not in npz.files:
        return None
    try:
        value = npz[key]
    except ValueError:
        return None
    return str(value.reshape(-1)[0]) if value.size else None


def kcal_frames(reader, z, pos, energy, forces, labels):
    """ReaderItems of an sGDML-style trajectory (rMD17, MD22): energies (F,) kcal/mol and forces
    (F, N, 3) kcal/mol/Å converted to eV and eV/Å once; source ids ``<file>:<frame>``."""
    energy_ev = np.asarray(energy, dtype=np.float64).reshape(-1) * KCAL_PER_MOL_TO_EV
    for frame in range(pos.shape[0]):
        yield ReaderItem(
            labels[frame],
            AtomsRecord(
                atomic_numbers=z,
                positions=pos[frame],
                energy=float(energy_ev[frame]),
                forces=forces[frame].astype(np.float64) * KCAL_PER_MOL_TO_EV,
                source=f"{reader.path.name}:{frame}",
                dataset=reader.dataset,
            ),
        )
