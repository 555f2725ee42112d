"""Generic ASE inputs: extxyz, ASE database (``.db``/``.json``), trajectory (``.traj``), and
anything else ``ase.io`` reads. Values are taken as stored (ASE's units: eV, Å).

Energy/forces/stress come from the stored calculator results; numeric ``atoms.info`` entries
become targets (see `AtomsRecord.from_atoms`). Options: ``ase_format`` (ASE format name,
detected when omitted), ``split`` and ``dataset`` (given to every record).
Source ids: ``"<file>#<index>"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem
from openjmp.data.record import AtomsRecord


def iter_ase_records(path: Path, fmt: str | None = None, dataset: str = ""):
    """Yield `AtomsRecord`s from any file ``ase.io`` reads, with source ids ``file#index``."""
    import ase.io

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    for index, atoms in enumerate(ase.io.iread(str(path), index=":", format=fmt)):
        yield AtomsRecord.from_atoms(atoms, source=f"{path.name}#{index}", dataset=dataset)


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
        **kw,
    ) -> None:
        super().__init__(path, **kw)
        self.ase_format, self.split, self.dataset_name = ase_format, split, dataset

    def describe(self) -> dict:
        return {**super().describe(), "ase_format": self.ase_format, "split": self.split}

    def _items(self) -> Iterator[ReaderItem]:
        try:
            for record in iter_ase_records(self.path, self.ase_format, self.dataset_name):
                yield ReaderItem(self.split, record)
        except FileNotFoundError:
            raise
        except (ValueError, KeyError, IndexError, OSError) as exc:
            if isinstance(exc, DataFormatError):
                raise
            raise DataFormatError(
                f"{self.path}: ASE cannot read this file: {type(exc).__name__}: {exc}"
            ) from exc
