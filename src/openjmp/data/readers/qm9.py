"""QM9 from the original figshare archive ``dsgdb9nsd.xyz.tar.bz2`` (any name: detected by
content), its extracted folder, or a single QM9 ``.xyz`` file.

Each ``dsgdb9nsd_NNNNNN.xyz``: line 1 ``na``; line 2 ``gdb <i>`` + 15 properties; then ``na``
lines ``El x y z q`` (Å, Mulliken charge e); frequencies; SMILES; InChI. Numbers may use
Mathematica exponents (``1.2*^-6``), read as ``1.2e-6`` everywhere.

Graph-level targets (internal units; converted here, once):

====== ===================================== =========== =========
name   property                              file unit   stored as
====== ===================================== =========== =========
A,B,C  rotational constants                  GHz         GHz
mu     dipole moment                         Debye       e·Å
alpha  isotropic polarizability              bohr³       Å³
homo   HOMO energy                           Hartree     eV
lumo   LUMO energy                           Hartree     eV
gap    HOMO-LUMO gap                         Hartree     eV
r2     electronic spatial extent             bohr²       Å²
zpve   zero-point vibrational energy         Hartree     eV
U0     internal energy at 0 K (total)        Hartree     eV
U      internal energy at 298.15 K (total)   Hartree     eV
H      enthalpy at 298.15 K (total)          Hartree     eV
G      free energy at 298.15 K (total)       Hartree     eV
Cv     heat capacity at 298.15 K             cal/(mol·K) cal/(mol·K)
====== ===================================== =========== =========

``energy`` and ``forces`` stay None (QM9 has no forces; use the targets). Molecules whose
index is listed in ``uncharacterized`` (path to ``uncharacterized.txt``; 3,054 in the real
file) are skipped and counted under ``"uncharacterized"``. No official split (``split=None``).
Source ids: ``"<archive or folder>:<member name>"``.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem, symbol_to_z
from openjmp.data.record import AtomsRecord
from openjmp.units import BOHR2_TO_ANGSTROM2, BOHR3_TO_ANGSTROM3, DEBYE_TO_E_ANGSTROM, HARTREE_TO_EV

#: the 15 properties of line 2, in file order, with the factor to internal units
PROPERTIES: tuple[tuple[str, float, str], ...] = (
    ("A", 1.0, "GHz"),
    ("B", 1.0, "GHz"),
    ("C", 1.0, "GHz"),
    ("mu", DEBYE_TO_E_ANGSTROM, "e*Angstrom"),
    ("alpha", BOHR3_TO_ANGSTROM3, "Angstrom^3"),
    ("homo", HARTREE_TO_EV, "eV"),
    ("lumo", HARTREE_TO_EV, "eV"),
    ("gap", HARTREE_TO_EV, "eV"),
    ("r2", BOHR2_TO_ANGSTROM2, "Angstrom^2"),
    ("zpve", HARTREE_TO_EV, "eV"),
    ("U0", HARTREE_TO_EV, "eV"),
    ("U", HARTREE_TO_EV, "eV"),
    ("H", HARTREE_TO_EV, "eV"),
    ("G", HARTREE_TO_EV, "eV"),
    ("Cv", 1.0, "cal/(mol*K)"),
)



def qm9_float(token: str) -> float:
    """Parse a QM9 number; Mathematica's ``*^`` exponent marker is read as ``e``."""
    return float(token.replace("*^", "e"))


def read_uncharacterized(path: Path) -> set[int]:
    """1-based molecule indices listed in ``uncharacterized.txt`` (first integer of data lines)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    indices = set()
    for line in path.read_text().splitlines():
        tokens = line.split()
        # data lines start with the 1-based molecule index followed by more columns;
        # header and footer lines are text
        if len(tokens) >= 2 and tokens[0].isdigit():
            indices.add(int(tokens[0]))
    if not indices:
        raise DataFormatError(f"{path}: no molecule indices found")
    return indices


def parse_xyz(text: str, where: str) -> tuple[int, AtomsRecord]:
    """One QM9 xyz file → (gdb index, record). Raises `DataFormatError` naming ``where``."""
    lines = text.splitlines()
    try:
        na = int(lines[0].strip())
    except (IndexError, ValueError):
        raise DataFormatError(f"{where}: first line should be the atom count") from None
    if len(lines) < na + 2:
        raise DataFormatError(f"{where}: {len(lines)} lines, need at least {na + 2} for {na} atoms")
    header = lines[1].split()
    if len(header) != 17 or header[0] != "gdb":
        raise DataFormatError(
            f"{where}: line 2 should be 'gdb <i>' and 15 properties, got {len(header)} tokens"
        )
    try:
        index = int(header[1])
        values = [qm9_float(t) for t in header[2:]]
    except ValueError as exc:
        raise DataFormatError(f"{where}: bad number on line 2: {exc}") from None
    z = np.empty(na, dtype=np.int64)
    pos = np.empty((na, 3))
    for i in range(na):
        tokens = lines[2 + i].split()
        if len(tokens) < 4:
            raise DataFormatError(
                f"{where}: atom line {i + 1} has {len(tokens)} fields, expected 5"
            )
        z[i] = symbol_to_z(tokens[0], f"{where}: atom {i + 1}")
        try:
            pos[i] = [qm9_float(t) for t in tokens[1:4]]
        except ValueError as exc:
            raise DataFormatError(f"{where}: atom {i + 1}: bad coordinate: {exc}") from None
    targets = {name: value * factor for (name, factor, _), value in zip(PROPERTIES, values)}
    return index, AtomsRecord(atomic_numbers=z, positions=pos, targets=targets, dataset="qm9")


class QM9Reader(Reader):
    """Args: ``uncharacterized`` (path to ``uncharacterized.txt``; those molecules are skipped)."""

    name = "qm9"
    dataset = "qm9"

    def __init__(self, path, *, uncharacterized: str | None = None, **kw) -> None:
        super().__init__(path, **kw)
        self.uncharacterized_path = uncharacterized
        self.excluded = read_uncharacterized(Path(uncharacterized)) if uncharacterized else set()

    def describe(self) -> dict:
        return {
            **super().describe(),
            "uncharacterized": self.uncharacterized_path,
            "excluded": len(self.excluded),
        }

    def target_units(self) -> dict[str, str]:
        return {name: unit for name, _, unit in PROPERTIES}

    def _members(self) -> Iterator[tuple[str, str]]:
        """(member name, text) in index order for a folder, archive order for a tar."""
        if self.path.is_dir():
            files = sorted(self.path.glob("dsgdb9nsd_*.xyz"))
            if not files:
                raise DataFormatError(f"{self.path}: no dsgdb9nsd_*.xyz files in this folder")
            for file in files:
                yield file.name, file.read_text()
            return
        if self.path.suffix.lower() == ".xyz":  # one molecule
            yield self.path.name, self.path.read_text(errors="replace")
            return
        try:
            tar = tarfile.open(self.path, "r:*")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataFormatError(f"{self.path}: cannot open as a tar archive: {exc}") from exc
        with tar:
            try:
                for member in tar:
                    if member.isfile() and member.name.endswith(".xyz"):
                        yield member.name, tar.extractfile(member).read().decode("utf-8", "replace")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DataFormatError(f"{self.path}: truncated or corrupt archive: {exc}") from exc

    def _items(self) -> Iterator[ReaderItem]:
        for member, text in self._members():
            where = f"{self.path}:{member}"
            try:
                index, record = parse_xyz(text, where)
            except DataFormatError as exc:
                self.bad("bad_record", str(exc))
                continue
            if index in self.excluded:  # the gdb index of line 2, whatever the file is called
                self.skip("uncharacterized")
                continue
            record.source = f"{self.path.name}:{Path(member).name}"
            yield ReaderItem(None, record)
