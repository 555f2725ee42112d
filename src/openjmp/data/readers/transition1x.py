"""Transition1x HDF5 (``transition1x-release.h5`` / ``Transition1x.h5``).

Layout::

    /data/<formula>/<rxnNNNN>/  atomic_numbers (Na,), positions (Nc, Na, 3) Å,
                                wB97x_6-31G(d).energy (Nc,) eV (total),
                                wB97x_6-31G(d).forces (Nc, Na, 3) eV/Å,
                                reactant/ transition_state/ product/ (frames also in the trajectory)
    /train/<formula>, /val/<formula>, /test/<formula>   links to /data/<formula>

No unit conversion (the file is in eV and Å already). The split of a record is the split group
that links its formula; formulas reached through a split group are read once there, and
``/data`` is only walked for formulas no split group links (``split=None``), so nothing is
counted twice. The endpoint subgroups (``reactant`` etc.) are not read: their frames are part of
the trajectory. Source ids: ``"<file>:<formula>/<rxn>/<frame>"``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from openjmp.data.readers._h5 import open_h5, read_dataset
from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem, check_shape
from openjmp.data.record import AtomsRecord

ENERGY_KEY = "wB97x_6-31G(d).energy"
FORCES_KEY = "wB97x_6-31G(d).forces"
SPLIT_GROUPS = ("train", "val", "test")


class Transition1xReader(Reader):
    """Args: ``split`` (None = all, else one of train/val/test)."""

    name = "transition1x"
    dataset = "transition1x"

    def __init__(self, path, *, split: str | None = None, **kw) -> None:
        super().__init__(path, **kw)
        if split is not None and split not in SPLIT_GROUPS:
            raise ValueError(f"transition1x: split must be one of {SPLIT_GROUPS}, got {split!r}")
        self.split = split

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split}

    def _items(self) -> Iterator[ReaderItem]:
        with open_h5(self.path) as f:
            if "data" not in f:
                raise DataFormatError(f"{self.path}: no /data group (not a Transition1x file?)")
            seen: set[str] = set()
            for split in SPLIT_GROUPS:
                if split not in f:
                    continue
                for formula in f[split]:
                    if formula in seen:
                        raise DataFormatError(
                            f"{self.path}: formula {formula} is linked from two splits"
                        )
                    seen.add(formula)
                    if self.split in (None, split):
                        yield from self._formula(f[split][formula], formula, split)
            if self.split is None:
                for formula in f["data"]:
                    if formula not in seen:
                        yield from self._formula(f["data"][formula], formula, None)

    def _formula(self, group, formula: str, split: str | None) -> Iterator[ReaderItem]:
        fname = self.path.name
        for rxn in group:
            where = f"{self.path}:{formula}/{rxn}"
            try:
                g = group[rxn]
                z = read_dataset(g, "atomic_numbers", where).astype(np.int64).reshape(-1)
                pos = read_dataset(g, "positions", where)
                energy = read_dataset(g, ENERGY_KEY, where)
                forces = read_dataset(g, FORCES_KEY, where)
                na, nc = z.shape[0], energy.shape[0]
                check_shape(pos, (nc, na, 3), "positions", where)
                check_shape(energy, (nc,), ENERGY_KEY, where)
                check_shape(forces, (nc, na, 3), FORCES_KEY, where)
            except DataFormatError:
                if not self.skip_bad:
                    raise
                self.skipped["bad_group"] += 1
                continue
            for frame in range(nc):
                yield ReaderItem(
                    split,
                    AtomsRecord(
                        atomic_numbers=z,
                        positions=pos[frame],
                        energy=float(energy[frame]),
                        forces=forces[frame],
                        source=f"{fname}:{formula}/{rxn}/{frame}",
                        dataset=self.dataset,
                    ),
                )
