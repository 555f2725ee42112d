"""QM9 as processed by PyG / downloaded by JMP: ``qm9_v3.pt``, a list of dicts.

Each dict: ``idx``, ``name``, ``z`` (n,), ``pos`` (n,3) Å, ``x``, ``edge_index``, ``edge_attr``,
``y`` (1,19). Loaded with ``torch.load(weights_only=True)`` (plain containers and tensors only;
the whole list is loaded at once — the file is ~0.3 GB). ``y`` columns (PyG order) and the units
stored here — the same names and units as the ``qm9`` reader:

0 mu D→e·Å, 1 alpha bohr³→Å³, 2 homo, 3 lumo, 4 gap (eV), 5 r2 bohr²→Å², 6 zpve, 7 U0, 8 U,
9 H, 10 G (eV), 11 Cv cal/(mol·K), 12 U0_atom, 13 U_atom, 14 H_atom, 15 G_atom (eV), 16 A,
17 B, 18 C (GHz). No official split (``split=None``). Source ids: ``"<file>:<idx>/<name>"``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem
from openjmp.data.record import AtomsRecord
from openjmp.units import BOHR2_TO_ANGSTROM2, BOHR3_TO_ANGSTROM3, DEBYE_TO_E_ANGSTROM

Y_COLUMNS: tuple[tuple[str, float, str], ...] = (
    ("mu", DEBYE_TO_E_ANGSTROM, "e*Angstrom"),
    ("alpha", BOHR3_TO_ANGSTROM3, "Angstrom^3"),
    ("homo", 1.0, "eV"),
    ("lumo", 1.0, "eV"),
    ("gap", 1.0, "eV"),
    ("r2", BOHR2_TO_ANGSTROM2, "Angstrom^2"),
    ("zpve", 1.0, "eV"),
    ("U0", 1.0, "eV"),
    ("U", 1.0, "eV"),
    ("H", 1.0, "eV"),
    ("G", 1.0, "eV"),
    ("Cv", 1.0, "cal/(mol*K)"),
    ("U0_atom", 1.0, "eV"),
    ("U_atom", 1.0, "eV"),
    ("H_atom", 1.0, "eV"),
    ("G_atom", 1.0, "eV"),
    ("A", 1.0, "GHz"),
    ("B", 1.0, "GHz"),
    ("C", 1.0, "GHz"),
)


class QM9PygReader(Reader):
    name = "qm9-pyg"
    dataset = "qm9"

    def target_units(self) -> dict[str, str]:
        return {name: unit for name, _, unit in Y_COLUMNS}

    def _items(self) -> Iterator[ReaderItem]:
        import pickle

        import torch

        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
            raise DataFormatError(
                f"{self.path}: cannot load with torch.load(weights_only=True): {exc}"
            ) from exc
        if not isinstance(data, (list, tuple)):
            raise DataFormatError(
                f"{self.path}: expected a list of dicts, got {type(data).__name__}"
            )
        for i, item in enumerate(data):
            where = f"{self.path}:{i}"
            try:
                if not isinstance(item, dict) or not {"z", "pos", "y"} <= set(item):
                    raise DataFormatError(f"{where}: expected a dict with keys z, pos, y")
                y = np.asarray(item["y"], dtype=np.float64).reshape(-1)
                if y.shape != (len(Y_COLUMNS),):
                    raise DataFormatError(
                        f"{where}: y has {y.size} values, expected {len(Y_COLUMNS)}"
                    )
                name = item.get("name", "")
                idx = item.get("idx", i)
                idx = int(idx.item() if hasattr(idx, "item") else idx)
                record = AtomsRecord(
                    atomic_numbers=np.asarray(item["z"]),
                    positions=np.asarray(item["pos"], dtype=np.float64),
                    targets={n: float(v) * f for (n, f, _), v in zip(Y_COLUMNS, y)},
                    source=f"{self.path.name}:{idx}/{name}",
                    dataset=self.dataset,
                )
            except DataFormatError as exc:
                self.bad("bad_record", str(exc))
                continue
            yield ReaderItem(None, record)
