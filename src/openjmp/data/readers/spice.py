"""SPICE HDF5 (``SPICE-1.1.x.hdf5``, or JMP's ``dipeptides.h5`` / ``solvated_amino_acids.h5``).

One group per molecule (N atoms, M conformations): ``subset`` (1,) string, ``atomic_numbers``
(N,), ``conformations`` (M,N,3) **bohr**, ``dft_total_energy`` (M,) Hartree,
``dft_total_gradient`` (M,N,3) Hartree/bohr, optional ``formation_energy`` (M,) Hartree.

Converted here, once: positions ×``BOHR_TO_ANGSTROM``; energy ×``HARTREE_TO_EV``;
**forces = −gradient** ×``HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM`` (JMP stores +gradient as
"force"; we do not copy that sign error); ``formation_energy`` → target in eV. If a dataset
carries a ``units`` attribute that disagrees (e.g. positions not in bohr) the reader refuses.

Options: ``subsets``: keep molecules whose ``subset`` equals, or contains (case-insensitively),
one of the given strings, e.g. ``["dipeptides", "solvated amino acids"]`` (JMP's two);
``split="jmp"``: flatten the selected (molecule, conformation) pairs in file order, permute with
``RandomState(seed)``, first ``int(0.8 n)`` ``train``, then ``n − int(0.8n) − int(0.1n)`` ``val``,
last ``int(0.1 n)`` ``test`` (chunk order is our assumption).
Source ids: ``"<file>:<molecule>/<conformation>"``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from openjmp.data.readers._h5 import open_h5, read_dataset
from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem, check_shape, split_labels
from openjmp.data.record import AtomsRecord
from openjmp.units import BOHR_TO_ANGSTROM, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV

EXPECTED_UNITS = {
    "conformations": ("bohr",),
    "dft_total_energy": ("hartree",),
    "dft_total_gradient": ("hartree/bohr",),
    "formation_energy": ("hartree",),
}


def _text(value) -> str:
    value = np.asarray(value).reshape(-1)
    if value.size == 0:
        return ""
    v = value[0]
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _check_units(group, key: str, where: str) -> None:
    units = group[key].attrs.get("units")
    if units is None:
        return
    units = _text(units).strip().lower().replace(" ", "")
    if units not in EXPECTED_UNITS[key]:
        raise DataFormatError(
            f"{where}: {key} has units {units!r}, expected {EXPECTED_UNITS[key][0]!r}"
        )


class SpiceReader(Reader):
    name = "spice"
    dataset = "spice"

    def __init__(
        self,
        path,
        *,
        subsets: list[str] | str | None = None,
        split: str | None = None,
        seed: int = 42,
        **kw,
    ) -> None:
        super().__init__(path, **kw)
        if isinstance(subsets, str):
            subsets = [subsets]
        self.subsets = list(subsets) if subsets else None
        if split not in (None, "jmp"):
            raise ValueError(f"spice: split must be None or 'jmp', got {split!r}")
        self.split, self.seed = split, int(seed)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "subsets": self.subsets,
            "split": self.split,
            "seed": self.seed,
        }

    def target_units(self) -> dict[str, str]:
        return {"formation_energy": "eV"}

    def _selected(self, group, where: str) -> bool:
        if self.subsets is None:
            return True
        subset = _text(read_dataset(group, "subset", where)) if "subset" in group else ""
        low = subset.lower()
        return any(s == subset or s.lower() in low for s in self.subsets)

    def _labels(self, f) -> Iterator:
        if self.split is None:
            while True:
                yield None
        n = 0
        for name in f:
            if self._selected(f[name], f"{self.path}:{name}") and "dft_total_energy" in f[name]:
                n += int(f[name]["dft_total_energy"].shape[0])
        n_train, n_test = int(0.8 * n), int(0.1 * n)
        labels = split_labels(
            n, [("train", n_train), ("val", n - n_train - n_test)], "test", self.seed
        )
        yield from labels

    def _items(self) -> Iterator[ReaderItem]:
        fname = self.path.name
        with open_h5(self.path) as f:
            labels = self._labels(f)
            for name in f:
                group = f[name]
                where = f"{self.path}:{name}"
                if not self._selected(group, where):
                    continue
                try:
                    z = read_dataset(group, "atomic_numbers", where).astype(np.int64).reshape(-1)
                    pos = read_dataset(group, "conformations", where)
                    energy = read_dataset(group, "dft_total_energy", where)
                    grad = read_dataset(group, "dft_total_gradient", where)
                    formation = (
                        read_dataset(group, "formation_energy", where)
                        if "formation_energy" in group
                        else None
                    )
                    for key in ("conformations", "dft_total_energy", "dft_total_gradient") + (
                        ("formation_energy",) if formation is not None else ()
                    ):
                        _check_units(group, key, where)
                    na, m = z.shape[0], energy.shape[0]
                    check_shape(energy, (m,), "dft_total_energy", where)
                    check_shape(pos, (m, na, 3), "conformations", where)
                    check_shape(grad, (m, na, 3), "dft_total_gradient", where)
                    if formation is not None:
                        check_shape(formation, (m,), "formation_energy", where)
                except DataFormatError:
                    if not self.skip_bad:
                        raise
                    self.skipped["bad_group"] += 1
                    if self.split is not None and "dft_total_energy" in group:
                        for _ in range(group["dft_total_energy"].shape[0]):
                            next(labels)
                    continue
                pos_a = pos.astype(np.float64) * BOHR_TO_ANGSTROM
                energy_ev = energy.astype(np.float64) * HARTREE_TO_EV
                forces = -grad.astype(np.float64) * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM
                formation_ev = (
                    None if formation is None else formation.astype(np.float64) * HARTREE_TO_EV
                )
                for c in range(m):
                    yield ReaderItem(
                        next(labels),
                        AtomsRecord(
                            atomic_numbers=z,
                            positions=pos_a[c],
                            energy=float(energy_ev[c]),
                            forces=forces[c],
                            targets={}
                            if formation_ev is None
                            else {"formation_energy": float(formation_ev[c])},
                            source=f"{fname}:{name}/{c}",
                            dataset=self.dataset,
                        ),
                    )
