"""rMD17 ``rmd17_<molecule>.npz`` (revised MD17).

Keys: ``nuclear_charges`` (N,), ``coords`` (F,N,3) Å, ``energies`` (F,) kcal/mol (total),
``forces`` (F,N,3) kcal/mol/Å (``old_*`` keys are the original MD17 labels; not read).
Energies and forces are converted to eV and eV/Å with ``KCAL_PER_MOL_TO_EV``.

Splits (option ``split``):

- ``None``: no split;
- ``"official"``: the official index files ``index_train_0K.csv`` / ``index_test_0K.csv``
  (K = ``split_index`` 1..5; one 0-based frame index per line) in ``splits_dir`` (default:
  ``../splits`` next to ``npz_data``) → ``train`` / ``test``; frames in neither get ``None``;
- ``"jmp"``: JMP's split: permutation ``RandomState(seed).shuffle(arange(F))``, first
  ``train_size`` (950) frames ``train``, next ``val_size`` (50) ``val``, the rest ``test``.

Source ids: ``"<file>:<frame>"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from openjmp.data.readers._npz import kcal_frames, npz_array, open_npz
from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem, check_shape, split_labels


def read_index_file(path: Path, n_frames: int) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such split index file")
    try:
        idx = np.array([int(float(t)) for t in path.read_text().split()], dtype=np.int64)
    except ValueError as exc:
        raise DataFormatError(f"{path}: not a list of integers: {exc}") from None
    if idx.size and (idx.min() < 0 or idx.max() >= n_frames):
        raise DataFormatError(f"{path}: index {int(idx.max())} outside 0..{n_frames - 1}")
    return idx


class RMD17Reader(Reader):
    name = "rmd17"
    dataset = "rmd17"

    def __init__(
        self,
        path,
        *,
        split: str | None = None,
        split_index: int = 1,
        splits_dir: str | None = None,
        train_size: int = 950,
        val_size: int = 50,
        seed: int = 42,
        **kw,
    ) -> None:
        super().__init__(path, **kw)
        if split not in (None, "official", "jmp"):
            raise ValueError(f"rmd17: split must be None, 'official' or 'jmp', got {split!r}")
        self.split = split
        self.split_index = int(split_index)
        self.splits_dir = (
            Path(splits_dir) if splits_dir else self.path.resolve().parent.parent / "splits"
        )
        self.train_size, self.val_size, self.seed = int(train_size), int(val_size), int(seed)

    def describe(self) -> dict:
        out = {**super().describe(), "split": self.split}
        if self.split == "official":
            out.update(split_index=self.split_index, splits_dir=str(self.splits_dir))
        elif self.split == "jmp":
            out.update(train_size=self.train_size, val_size=self.val_size, seed=self.seed)
        return out

    def _labels(self, n: int) -> np.ndarray:
        if self.split is None:
            return np.full(n, None, dtype=object)
        if self.split == "jmp":
            return split_labels(
                n, [("train", self.train_size), ("val", self.val_size)], "test", self.seed
            )
        labels = np.full(n, None, dtype=object)
        k = self.split_index
        train = read_index_file(self.splits_dir / f"index_train_{k:02d}.csv", n)
        test = read_index_file(self.splits_dir / f"index_test_{k:02d}.csv", n)
        if np.intersect1d(train, test).size:
            raise DataFormatError(f"{self.splits_dir}: split {k} train and test indices overlap")
        labels[train] = "train"
        labels[test] = "test"
        return labels

    def _items(self) -> Iterator[ReaderItem]:
        npz = open_npz(self.path)
        with npz:
            z = npz_array(npz, "nuclear_charges", self.path).astype(np.int64).reshape(-1)
            pos = npz_array(npz, "coords", self.path)
            energy = npz_array(npz, "energies", self.path)
            forces = npz_array(npz, "forces", self.path)
        where = str(self.path)
        n_atoms = z.shape[0]
        check_shape(pos, (None, n_atoms, 3), "coords", where)
        n = pos.shape[0]
        check_shape(energy, (n,), "energies", where)
        check_shape(forces, (n, n_atoms, 3), "forces", where)
        labels = self._labels(n)
        yield from kcal_frames(self, z, pos, energy, forces, labels)
