"""Generic ASE inputs: extxyz, ASE database (``.db``/``.json``), trajectory (``.traj``), and
anything else ``ase.io`` reads. Values are taken as stored (ASE's units: eV, Å).

Energy/forces/stress come from the stored calculator results, else MACE's ``REF_energy`` /
``REF_forces`` / ``REF_stress``, or from the keys named by the options ``energy_key``,
``forces_key``, ``stress_key`` (`openjmp.data.record.LabelKeys`); other numeric ``atoms.info``
entries become targets (see `AtomsRecord.from_atoms`). Options: ``ase_format`` (ASE format name,
detected when omitted), ``split`` and ``dataset`` (given to every record).
Source ids: ``"<file>#<index>"``, or the id a file written by openjmp carries
(``info["openjmp_source"]``, so that exported records keep their identity).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem
from openjmp.data.record import AtomsRecord, LabelKeys


def iter_ase_records(path: Path, fmt: str | None = None, dataset: str = "",
                     label_keys: LabelKeys | None = None):
    """Yield `AtomsRecord`s from any file ``ase.io`` reads, with source ids ``file#index``."""
    import ase.io

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    for index, atoms in enumerate(ase.io.iread(str(path), index=":", format=fmt)):
        yield AtomsRecord.from_atoms(atoms, source=f"{path.name}#{index}", dataset=dataset,
                                     label_keys=label_keys)


class AseReader(Reader):
    name = "ase"
    dataset = ""

    def __init__(
        self,
        path,
        *,
        ase_format: str | None = None,
        split: str | None = None,
        dataset: str = "",
        energy_key: str | None = None,
        forces_key: str | None = None,
        stress_key: str | None = None,
        **kw,
    ) -> None:
        super().__init__(path, **kw)
        self.ase_format, self.split, self.dataset_name = ase_format, split, dataset
        self.label_keys = LabelKeys(energy_key, forces_key, stress_key)

    def describe(self) -> dict:
        keys = {k: v for k, v in vars(self.label_keys).items() if v is not None}
        return {**super().describe(), "ase_format": self.ase_format, "split": self.split, **keys}

    def _items(self) -> Iterator[ReaderItem]:
        try:
            for record in iter_ase_records(self.path, self.ase_format, self.dataset_name,
                                           self.label_keys):
                yield ReaderItem(self.split, record)
        except FileNotFoundError:
            raise
        except (ValueError, KeyError, IndexError, OSError) as exc:
            if isinstance(exc, DataFormatError):
                raise
            raise DataFormatError(
                f"{self.path}: ASE cannot read this file: {type(exc).__name__}: {exc}"
            ) from exc
