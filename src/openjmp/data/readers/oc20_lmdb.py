"""OC20 / OC22 LMDBs as written by fairchem v1 and JMP (pickled PyG ``Data`` per key).

Container: a folder of single-file LMDBs ``data.0000.lmdb, ...`` (read in name order) or one
``.lmdb`` file. Keys are ASCII ``"0".."n-1"``; the optional key ``"length"`` holds the pickled
record count (else the entry count is used). Values are unpickled only through the allow-list
of `openjmp.data.readers._safe_pickle` (torch_geometric is not needed; anything outside the
list is refused with an error naming file and key).

Attributes read (both generations): ``pos`` (N,3) Å; ``cell`` (1,3,3) Å rows = lattice
vectors; ``atomic_numbers`` (float or int); ``natoms``; ``tags``; ``fixed``; energy from
``energy`` (new) or ``y`` (old), forces from ``forces`` / ``force`` (eV/Å), ``stress``; IS2RE
``y_init`` / ``y_relaxed`` become targets (eV). ``pbc`` defaults to all True (OC20/OC22 slabs
and bulks are periodic) unless the object carries ``pbc``; an object without a cell or with a
zero cell (JMP's own MD22 / SPICE fine-tuning LMDBs) is non-periodic whatever its ``pbc`` says,
and so is one with a singular cell and no ``pbc``.

Energies: OC20 S2EF ``y`` is the *adsorption* energy (reference subtracted by preprocessing);
OC22 objects (attribute ``oc22``) carry the DFT *total* energy. With ``total_energy=True`` and
``oc20_ref=<oc20_ref.pkl>`` OC20 energies become total energies: ``E += oc20_ref["random<sid>"]``
(OC22 objects are left as they are). Without it the energy is stored as found and
`describe()` says which kind it is.

Source ids: ``"<file>:<key>"``, with ``"/random<sid>/frame<fid>"`` appended when present.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import numpy as np

from openjmp.data.readers._lmdb import lmdb_files, open_lmdb
from openjmp.data.readers._safe_pickle import attributes, safe_loads
from openjmp.data.readers.base import DataFormatError, Reader, ReaderItem
from openjmp.data.record import AtomsRecord


def _first(attrs: dict, *names):
    for name in names:
        if name in attrs:
            return attrs[name]
    return None


class OC20LmdbReader(Reader):
    """Args: ``split`` (name given to every record, e.g. ``"train"``), ``dataset`` (override the
    dataset name; default ``oc22`` for objects with ``oc22`` else ``oc20``), ``total_energy`` and
    ``oc20_ref`` (see module docstring)."""

    name = "oc20-lmdb"
    dataset = "oc20"

    def __init__(
        self,
        path,
        *,
        split: str | None = None,
        dataset: str | None = None,
        total_energy: bool = False,
        oc20_ref: str | None = None,
        **kw,
    ) -> None:
        super().__init__(path, **kw)
        self.split = split
        self.dataset_override = dataset
        self.total_energy = total_energy
        self.oc20_ref_path = oc20_ref
        if total_energy and oc20_ref is None:
            raise ValueError("oc20-lmdb: total_energy=True needs oc20_ref=<path to oc20_ref.pkl>")
        self._ref: dict | None = None

    def describe(self) -> dict:
        return {
            **super().describe(),
            "split": self.split,
            "energy": "total (OC20 + oc20_ref)"
            if self.total_energy
            else "as stored (OC20 y: adsorption energy; OC22: total)",
            "oc20_ref": self.oc20_ref_path,
        }

    def _load_ref(self) -> dict:
        if self._ref is None:
            from pathlib import Path

            path = Path(self.oc20_ref_path)
            try:
                ref = safe_loads(path.read_bytes())
            except (OSError, pickle.UnpicklingError) as exc:
                raise DataFormatError(f"{path}: cannot read oc20_ref pickle: {exc}") from exc
            if not isinstance(ref, dict):
                raise DataFormatError(f"{path}: oc20_ref should be a dict 'random<sid>' -> energy")
            self._ref = ref
        return self._ref

    def __len__(self) -> int:
        total = 0
        for file in lmdb_files(self.path):
            env = open_lmdb(file)
            with env.begin() as txn:
                total += self._length(txn, file)
            env.close()
        return total

    def _length(self, txn, file) -> int:
        raw = txn.get(b"length")
        if raw is None:
            return int(txn.stat()["entries"])
        try:
            return int(safe_loads(raw))
        except (pickle.UnpicklingError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{file}: unreadable 'length' entry: {exc}") from exc

    def _items(self) -> Iterator[ReaderItem]:
        import lmdb

        for file in lmdb_files(self.path):
            env = open_lmdb(file)
            try:
                with env.begin() as txn:
                    n = self._length(txn, file)
                    for i in range(n):
                        where = f"{file}:{i}"
                        try:
                            raw = txn.get(str(i).encode("ascii"))
                        except lmdb.Error as exc:
                            raise DataFormatError(
                                f"{where}: cannot read (truncated LMDB?): {exc}"
                            ) from exc
                        if raw is None:
                            self.bad("missing_key", f"{where}: key {i} missing (length says {n})")
                            continue
                        try:
                            record = self._record(raw, file.name, i, where)
                        except (DataFormatError, pickle.UnpicklingError) as exc:
                            self.bad(
                                "bad_record",
                                f"{where}: {exc}"
                                if not str(exc).startswith(str(file))
                                else str(exc),
                            )
                            continue
                        yield ReaderItem(self.split, record)
            finally:
                env.close()

    def _record(self, raw: bytes, fname: str, key: int, where: str) -> AtomsRecord:
        try:
            obj = safe_loads(raw)
        except pickle.UnpicklingError:
            raise
        except Exception as exc:  # corrupt bytes raise all sorts of errors
            raise pickle.UnpicklingError(f"corrupt pickle: {type(exc).__name__}: {exc}") from exc
        attrs = attributes(obj)
        if "pos" not in attrs or "atomic_numbers" not in attrs:
            raise DataFormatError(
                f"{where}: object lacks pos/atomic_numbers (keys: {sorted(attrs)})"
            )
        z_raw = np.asarray(attrs["atomic_numbers"]).reshape(-1)
        z = np.rint(z_raw).astype(np.int64)
        if not np.array_equal(z, z_raw):
            raise DataFormatError(f"{where}: non-integer atomic numbers")
        pos = np.asarray(attrs["pos"], dtype=np.float64)
        n = z.shape[0]
        if pos.shape != (n, 3):
            raise DataFormatError(f"{where}: pos has shape {pos.shape}, expected ({n}, 3)")
        natoms = attrs.get("natoms")
        if natoms is not None and int(np.asarray(natoms).reshape(-1)[0]) != n:
            raise DataFormatError(f"{where}: natoms={natoms} but {n} atomic numbers")
        cell = attrs.get("cell")
        cell = (
            np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64).reshape(3, 3)
        )
        pbc = _pbc(attrs.get("pbc"), cell)
        is_oc22 = "oc22" in attrs
        energy = _first(attrs, "energy", "y")
        if energy is not None:
            energy = float(np.asarray(energy).reshape(-1)[0])
        forces = _first(attrs, "forces", "force")
        stress = attrs.get("stress")
        sid, fid = attrs.get("sid"), attrs.get("fid")
        if self.total_energy and not is_oc22 and energy is not None:
            if sid is None:
                raise DataFormatError(f"{where}: total_energy needs 'sid' but the object has none")
            ref = self._load_ref().get(f"random{sid}")
            if ref is None:
                raise DataFormatError(f"{where}: oc20_ref has no entry 'random{sid}'")
            energy += float(ref)
        targets = {
            k: float(np.asarray(attrs[k]).reshape(-1)[0])
            for k in ("y_init", "y_relaxed")
            if k in attrs
        }
        source = f"{fname}:{key}"
        if sid is not None:
            source += f"/random{sid}"
        if fid is not None:
            source += f"/frame{fid}"
        fixed = attrs.get("fixed")
        return AtomsRecord(
            atomic_numbers=z,
            positions=pos,
            cell=cell,
            pbc=pbc,
            energy=energy,
            forces=None if forces is None else np.asarray(forces, dtype=np.float64),
            stress=None if stress is None else np.asarray(stress, dtype=np.float64).reshape(3, 3),
            targets=targets,
            tags=attrs.get("tags"),
            fixed=None if fixed is None else np.asarray(fixed).reshape(-1) != 0,
            source=source,
            dataset=self.dataset_override or ("oc22" if is_oc22 else "oc20"),
        )


def _pbc(pbc, cell: np.ndarray) -> np.ndarray:
    """(3,) bools: the object's ``pbc`` (default: all True when the cell has a volume); all False
    for a zero cell, or a singular one with no ``pbc`` given."""
    if not cell.any() or (pbc is None and abs(float(np.linalg.det(cell))) < 1e-9):
        return np.zeros(3, dtype=bool)
    return np.ones(3, dtype=bool) if pbc is None else np.asarray(pbc, dtype=bool).reshape(-1)
