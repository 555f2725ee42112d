"""QMOF (figshare 13147324): ``qmof.json`` + ``qmof_structure_data.json``, joined on ``qmof_id``.

``path``: the ``qmof_database`` folder, or ``qmof.json`` (the structure file is next to it).
``qmof.json`` is a list of dicts with ``qmof_id`` and ``outputs.pbe`` {``bandgap`` eV,
``energy_total`` eV, ...}; ``qmof_structure_data.json`` a list of {``qmof_id``, ``structure``:
pymatgen Structure dict}. Z comes from each site's ``species[0].element`` (not the label).

Record: periodic structure, ``energy`` = ``outputs.pbe.energy_total`` (eV, total), target
``bandgap`` (eV, JMP's target). Entries without a structure or a PBE band gap are errors (or,
with ``skip_bad``, skipped). Split option ``split="jmp"``: ``RandomState(seed)`` permutation of
the entries in ``qmof.json`` order, first ``int(0.8n)`` ``train``, then ``val`` (the rest), last
``int(0.1n)`` ``test`` (chunk order is our assumption). Both files are parsed whole.
Source ids: ``"qmof.json:<qmof_id>"``.
"""

from __future__ import annotations

from collections.abc import Iterator

from openjmp.data.readers._pymatgen import structure_arrays
from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem, split_labels
from openjmp.data.readers.matbench import load_json
from openjmp.data.record import AtomsRecord


class QmofReader(Reader):
    name = "qmof"
    dataset = "qmof"

    def __init__(self, path, *, split: str | None = None, seed: int = 42, **kw) -> None:
        super().__init__(path, **kw)
        folder = self.path if self.path.is_dir() else self.path.parent
        self.properties_path = folder / "qmof.json" if self.path.is_dir() else self.path
        self.structures_path = folder / "qmof_structure_data.json"
        for p in (self.properties_path, self.structures_path):
            if not p.exists():
                raise FileNotFoundError(
                    f"{p}: no such file (QMOF needs qmof.json and qmof_structure_data.json)"
                )
        if split not in (None, "jmp"):
            raise ValueError(f"qmof: split must be None or 'jmp', got {split!r}")
        self.split, self.seed = split, int(seed)

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "seed": self.seed}

    def target_units(self) -> dict[str, str]:
        return {"bandgap": "eV"}

    def _items(self) -> Iterator[ReaderItem]:
        entries = load_json(self.properties_path)
        structures = load_json(self.structures_path)
        if not isinstance(entries, list) or not isinstance(structures, list):
            raise DataFormatError(
                f"{self.properties_path.parent}: both QMOF files should hold JSON lists"
            )
        by_id = {}
        for j, s in enumerate(structures):
            if not isinstance(s, dict) or "qmof_id" not in s:
                raise DataFormatError(f"{self.structures_path}: entry {j} has no qmof_id")
            by_id[s["qmof_id"]] = s.get("structure")
        n = len(entries)
        if self.split == "jmp":
            n_train, n_test = int(0.8 * n), int(0.1 * n)
            labels = split_labels(
                n, [("train", n_train), ("val", n - n_train - n_test)], "test", self.seed
            )
        else:
            labels = [None] * n
        name = self.properties_path.name
        for i, entry in enumerate(entries):
            qid = entry.get("qmof_id", f"#{i}") if isinstance(entry, dict) else f"#{i}"
            where = f"{self.properties_path}:{qid}"
            try:
                if not isinstance(entry, dict) or "qmof_id" not in entry:
                    raise DataFormatError(f"{where}: entry has no qmof_id")
                if by_id.get(qid) is None:
                    raise DataFormatError(
                        f"{where}: no structure with this qmof_id in {self.structures_path.name}"
                    )
                pbe = (entry.get("outputs") or {}).get("pbe") or {}
                if pbe.get("bandgap") is None:
                    raise DataFormatError(f"{where}: no outputs.pbe.bandgap")
                z, pos, cell = structure_arrays(by_id[qid], where)
            except DataFormatError as exc:
                self.bad("bad_record", str(exc))
                continue
            energy = pbe.get("energy_total")
            yield ReaderItem(
                labels[i],
                AtomsRecord(
                    atomic_numbers=z,
                    positions=pos,
                    cell=cell,
                    pbc=True,
                    energy=None if energy is None else float(energy),
                    targets={"bandgap": float(pbe["bandgap"])},
                    source=f"{name}:{qid}",
                    dataset=self.dataset,
                ),
            )
