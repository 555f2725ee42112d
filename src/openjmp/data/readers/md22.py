"""MD22 ``md22_<molecule>.npz`` (sGDML format).

Keys: ``z`` (N,), ``R`` (F,N,3) Å, ``E`` (F,1) kcal/mol (total; shape (F,) also accepted),
``F`` (F,N,3) kcal/mol/Å; string ``e_unit`` / ``r_unit`` are checked when readable without
pickle (must be ``kcal/mol`` / ``Ang``). Converted to eV and eV/Å with ``KCAL_PER_MOL_TO_EV``.

Split option ``split="jmp"``: permutation ``RandomState(seed).shuffle(arange(F))``; the first
``train_val_size`` frames (JMP's per-molecule size, `JMP_TRAIN_VAL_SIZE`, or the option) are
split into ``train`` (first ``tv - int(0.05 tv)``) and ``val`` (next ``int(0.05 tv)``); the rest
is ``test``. (The order of train and val inside the first ``tv`` frames is our assumption.)
Source ids: ``"<file>:<frame>"``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from openjmp.data.readers._npz import kcal_frames, npz_array, npz_string, open_npz
from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem, check_shape, split_labels

#: JMP's train+val frame counts per molecule (file name md22_<molecule>.npz)
JMP_TRAIN_VAL_SIZE = {
    "Ac-Ala3-NHMe": 6000,
    "DHA": 8000,
    "stachyose": 8000,
    "AT-AT": 3000,
    "AT-AT-CG-CG": 2000,
    "buckyball-catcher": 600,
    "double-walled_nanotube": 800,
}


class MD22Reader(Reader):
    name = "md22"
    dataset = "md22"

    def __init__(
        self,
        path,
        *,
        split: str | None = None,
        train_val_size: int | None = None,
        seed: int = 42,
        **kw,
    ) -> None:
        super().__init__(path, **kw)
        if split not in (None, "jmp"):
            raise ValueError(f"md22: split must be None or 'jmp', got {split!r}")
        self.split, self.seed = split, int(seed)
        molecule = self.path.stem.removeprefix("md22_")
        if split == "jmp" and train_val_size is None:
            if molecule not in JMP_TRAIN_VAL_SIZE:
                raise ValueError(f"md22: unknown molecule {molecule!r}; pass train_val_size")
            train_val_size = JMP_TRAIN_VAL_SIZE[molecule]
        self.train_val_size = train_val_size

    def describe(self) -> dict:
        return {
            **super().describe(),
            "split": self.split,
            "train_val_size": self.train_val_size,
            "seed": self.seed,
        }

    def _items(self) -> Iterator[ReaderItem]:
        where = str(self.path)
        npz = open_npz(self.path)
        with npz:
            z = npz_array(npz, "z", self.path).astype(np.int64).reshape(-1)
            pos = npz_array(npz, "R", self.path)
            energy = npz_array(npz, "E", self.path)
            forces = npz_array(npz, "F", self.path)
            e_unit, r_unit = npz_string(npz, "e_unit"), npz_string(npz, "r_unit")
        if e_unit is not None and e_unit.strip().lower() != "kcal/mol":
            raise DataFormatError(f"{where}: e_unit is {e_unit!r}, expected 'kcal/mol'")
        if r_unit is not None and r_unit.strip().lower() not in ("ang", "angstrom"):
            raise DataFormatError(f"{where}: r_unit is {r_unit!r}, expected 'Ang'")
        n_atoms = z.shape[0]
        check_shape(pos, (None, n_atoms, 3), "R", where)
        n = pos.shape[0]
        if energy.shape == (n, 1):
            energy = energy[:, 0]
        check_shape(energy, (n,), "E", where)
        check_shape(forces, (n, n_atoms, 3), "F", where)
        if self.split == "jmp":
            tv = int(self.train_val_size)
            n_val = int(0.05 * tv)
            labels = split_labels(n, [("train", tv - n_val), ("val", n_val)], "test", self.seed)
        else:
            labels = np.full(n, None, dtype=object)
        yield from kcal_frames(self, z, pos, energy, forces, labels)
