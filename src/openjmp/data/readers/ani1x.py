"""ANI-1x HDF5 (``ani1x-release.h5``): one group per formula, one dataset per property.

Per group (Na atoms, Nc conformers): ``atomic_numbers`` (Na,), ``coordinates`` (Nc, Na, 3) Å,
``<level>.energy`` (Nc,) Hartree (total), ``<level>.forces`` (Nc, Na, 3) Hartree/Å (forces, not
gradients; only the wB97x levels have them). Energies and forces are converted to eV and eV/Å.

Properties missing for a conformer are NaN; such conformers are skipped and counted under
``"nan_label"`` (the official loader drops them the same way). ANI-1x defines no splits
(JMP's split is unseeded, hence not reproducible); every item has ``split=None``.
Source ids: ``"<file>:<formula>/<conformer>"``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from openjmp.data.readers._h5 import open_h5, read_dataset
from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem, check_shape
from openjmp.data.record import AtomsRecord
from openjmp.units import HARTREE_TO_EV

#: levels of theory whose ``.energy`` is a total energy (the ``corr_energy`` keys are not)
TOTAL_ENERGY_LEVELS = ("wb97x_dz", "wb97x_tz", "ccsd(t)_cbs", "hf_dz", "hf_tz", "hf_qz")


class ANI1xReader(Reader):
    """Args: ``level`` (default ``"wb97x_dz"``): which ``<level>.energy`` / ``<level>.forces``;
    ``forces`` (default True): read ``<level>.forces`` (error when the level has none)."""

    name = "ani1x"
    dataset = "ani1x"

    def __init__(self, path, *, level: str = "wb97x_dz", forces: bool = True, **kw) -> None:
        super().__init__(path, **kw)
        if level not in TOTAL_ENERGY_LEVELS:
            raise ValueError(f"ani1x: unknown level {level!r}; choose one of {TOTAL_ENERGY_LEVELS}")
        self.level = level
        self.with_forces = forces

    def describe(self) -> dict:
        return {**super().describe(), "level": self.level, "forces": self.with_forces}

    def _items(self) -> Iterator[ReaderItem]:
        fname = self.path.name
        with open_h5(self.path) as f:
            for formula in f:
                where = f"{self.path}:{formula}"
                group = f[formula]
                try:
                    z = read_dataset(group, "atomic_numbers", where).astype(np.int64)
                    pos = read_dataset(group, "coordinates", where)
                    energy = read_dataset(group, f"{self.level}.energy", where)
                    forces = (
                        read_dataset(group, f"{self.level}.forces", where)
                        if self.with_forces
                        else None
                    )
                    na, nc = z.shape[0], energy.shape[0]
                    check_shape(pos, (nc, na, 3), "coordinates", where)
                    check_shape(energy, (nc,), f"{self.level}.energy", where)
                    if forces is not None:
                        check_shape(forces, (nc, na, 3), f"{self.level}.forces", where)
                except DataFormatError:
                    if not self.skip_bad:
                        raise
                    self.skipped["bad_group"] += 1
                    continue
                ok = np.isfinite(energy)
                if forces is not None:
                    ok &= np.isfinite(forces).all(axis=(1, 2))
                self.skip("nan_label", int((~ok).sum()))
                energy_ev = energy.astype(np.float64) * HARTREE_TO_EV
                for frame in np.flatnonzero(ok):
                    yield ReaderItem(
                        None,
                        AtomsRecord(
                            atomic_numbers=z,
                            positions=pos[frame],
                            energy=float(energy_ev[frame]),
                            forces=None
                            if forces is None
                            else forces[frame].astype(np.float64) * HARTREE_TO_EV,
                            source=f"{fname}:{formula}/{frame}",
                            dataset=self.dataset,
                        ),
                    )
