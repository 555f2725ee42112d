"""Writers for the original on-disk layouts (see ``shared/formats.md``), byte-deterministic and
atomic (temp file in the same folder, then ``os.replace``).

Each writer takes plain numpy arrays in the *layout's* units (the caller converts from eV/Å).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.data.generate.common import (
    atomic_write_bytes,
    atomic_write_with,
    gzip_bytes,
    npz_bytes,
    tar_bz2_bytes,
)

#: ASE-db ``ctime``/``mtime`` are years since 2000; a fixed value keeps files reproducible
FIXED_ASE_DB_TIME = 26.0
ASE_DB_USER = "openjmp"


# --------------------------------------------------------------------------------------------
# aselmdb (ASE database on a single-file LMDB)


def aselmdb_row(
    *,
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    energy: float,
    forces: np.ndarray,
    unique_id: str,
    tags: np.ndarray | None = None,
    fixed_indices: Sequence[int] | None = None,
    key_value_pairs: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    calculator: str | None = None,
) -> dict[str, Any]:
    """One ASE ``AtomsRow`` as the dict that ase-db's LMDB backend stores (energy eV,
    forces eV/Å, positions/cell Å)."""
    row: dict[str, Any] = {
        "numbers": np.asarray(numbers, dtype=np.int64),
        "pbc": np.asarray(pbc, dtype=bool),
        "cell": np.asarray(cell, dtype=np.float64),
        "positions": np.asarray(positions, dtype=np.float64),
        "unique_id": unique_id,
        "ctime": FIXED_ASE_DB_TIME,
        "mtime": FIXED_ASE_DB_TIME,
        "user": ASE_DB_USER,
        "energy": float(energy),
        "forces": np.asarray(forces, dtype=np.float64),
    }
    if tags is not None and np.any(tags):
        row["tags"] = np.asarray(tags, dtype=np.int64)
    if fixed_indices is not None and len(fixed_indices):
        row["constraints"] = [{"name": "FixAtoms",
                               "kwargs": {"indices": [int(i) for i in fixed_indices]}}]
    if calculator:
        row["calculator"] = calculator
        row["calculator_parameters"] = {}
    row["key_value_pairs"] = dict(key_value_pairs or {})
    row["data"] = dict(data or {})
    return row


def write_aselmdb(path: Path, rows: Sequence[dict[str, Any]],
                  metadata: dict[str, Any] | None = None) -> None:
    """Write an ``.aselmdb``: keys ``"1".."N"`` → zlib(JSON row), plus ``"nextid"``,
    ``"metadata"`` and ``"deleted_ids"`` (the layout of fairchem's / ase-db-backends' LMDB
    database, readable by ``ase_db_backends.aselmdb.LMDBDatabase``)."""
    import lmdb
    from ase.io.jsonio import encode

    def put(txn, key: str, obj: Any) -> None:
        txn.put(key.encode("ascii"), zlib.compress(encode(obj).encode("utf-8")))

    def write(tmp: Path) -> None:
        total = sum(len(encode(r)) for r in rows[:50]) / max(1, min(50, len(rows)))
        map_size = int(max(64 << 20, 4 * total * len(rows) + (16 << 20)))
        env = lmdb.open(str(tmp), subdir=False, map_size=map_size, lock=False, meminit=True,
                        readahead=False, sync=True)
        try:
            with env.begin(write=True) as txn:
                for i, row in enumerate(rows, start=1):
                    put(txn, str(i), row)
                put(txn, "nextid", len(rows) + 1)
                put(txn, "metadata", dict(metadata or {}))
                put(txn, "deleted_ids", [])
        finally:
            env.close()

    atomic_write_with(path, write)


# --------------------------------------------------------------------------------------------
# HDF5 (ANI-1x, Transition1x)


def _h5_dataset(group, name: str, value: np.ndarray, compress: bool) -> None:
    value = np.asarray(value)
    kwargs: dict[str, Any] = {"track_times": False}
    if compress and value.ndim >= 1 and value.size >= 64:
        kwargs.update(compression="gzip", compression_opts=4, shuffle=True)
    group.create_dataset(name, data=value, **kwargs)


def _h5_file(path: Path):
    import h5py

    # libver pinned so the superblock/object headers do not depend on the HDF5 build defaults;
    # track_order off and track_times off so the bytes depend only on the content
    return h5py.File(path, "w", libver=("earliest", "v110"), track_order=False)


def write_ani1x_h5(path: Path, groups: dict[str, dict[str, np.ndarray]]) -> None:
    """ANI-1x layout: one group per formula, datasets ``atomic_numbers`` (Na,) uint8,
    ``coordinates`` (Nc,Na,3) float32 Å, ``<level>.energy`` (Nc,) float64 Ha,
    ``<level>.forces`` (Nc,Na,3) float32 Ha/Å, … as given in ``groups[formula]``."""

    def write(tmp: Path) -> None:
        with _h5_file(tmp) as f:
            for formula in sorted(groups):
                g = f.create_group(formula, track_order=False)
                for key in sorted(groups[formula]):
                    _h5_dataset(g, key, groups[formula][key], compress=True)

    atomic_write_with(path, write)


def write_transition1x_h5(path: Path, reactions: Sequence[dict[str, Any]],
                          split_of_formula: dict[str, str], level: str) -> None:
    """Transition1x layout: ``/data/<formula>/<rxnNNNN>/{atomic_numbers, positions,
    <level>.energy (eV), <level>.forces (eV/Å)}`` plus subgroups ``reactant``,
    ``transition_state``, ``product`` (leading dim 1, scalar ``hash``), and split groups
    ``/train|/val|/test/<formula>`` that are soft links to ``/data/<formula>``.

    Each reaction dict: formula, rxn (str), atomic_numbers (Na,), positions (Nc,Na,3),
    energy (Nc,), forces (Nc,Na,3), reactant/transition_state/product: dicts with
    positions (1,Na,3), energy (1,), forces (1,Na,3), and hash (str).
    """
    import h5py

    def write(tmp: Path) -> None:
        with _h5_file(tmp) as f:
            data = f.create_group("data", track_order=False)
            for rxn in sorted(reactions, key=lambda r: (r["formula"], r["rxn"])):
                fg = data.require_group(rxn["formula"])
                rg = fg.create_group(rxn["rxn"], track_order=False)
                _h5_dataset(rg, "atomic_numbers", rxn["atomic_numbers"], compress=False)
                _h5_dataset(rg, "positions", rxn["positions"], compress=True)
                _h5_dataset(rg, f"{level}.energy", rxn["energy"], compress=True)
                _h5_dataset(rg, f"{level}.forces", rxn["forces"], compress=True)
                for sub in ("product", "reactant", "transition_state"):
                    sg = rg.create_group(sub, track_order=False)
                    _h5_dataset(sg, "atomic_numbers", rxn["atomic_numbers"], compress=False)
                    _h5_dataset(sg, "positions", rxn[sub]["positions"], compress=False)
                    _h5_dataset(sg, f"{level}.energy", rxn[sub]["energy"], compress=False)
                    _h5_dataset(sg, f"{level}.forces", rxn[sub]["forces"], compress=False)
                    sg.create_dataset("hash", data=np.bytes_(rxn[sub]["hash"]),
                                      track_times=False)
            for split in ("train", "val", "test"):
                sg = f.create_group(split, track_order=False)
                for formula in sorted(split_of_formula):
                    if split_of_formula[formula] == split:
                        sg[formula] = h5py.SoftLink(f"/data/{formula}")

    atomic_write_with(path, write)


# --------------------------------------------------------------------------------------------
# npz (rMD17, MD22)


def write_npz(path: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    atomic_write_bytes(path, npz_bytes(arrays, compress=compress))


def write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# QM9 xyz archive


def _qm9_float(x: float) -> str:
    if not np.isfinite(x):
        return "NaN"
    return f"{x:.6f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.6e}"


def qm9_xyz_text(index: int, symbols: Sequence[str], positions: np.ndarray,
                 charges: np.ndarray, props: Sequence[float], frequencies: Sequence[float],
                 smiles: str, inchi: str) -> str:
    """One ``dsgdb9nsd_NNNNNN.xyz`` file: line 2 is ``gdb <i>`` and 15 properties A B C mu
    alpha homo lumo gap r2 zpve U0 U H G Cv (tab separated, 17 whitespace tokens)."""
    assert len(props) == 15
    lines = [str(len(symbols)),
             "\t".join([f"gdb {index}"] + [_qm9_float(float(p)) for p in props])]
    for sym, (x, y, z), q in zip(symbols, positions, charges):
        lines.append(f"{sym}\t{x:.10f}\t{y:.10f}\t{z:.10f}\t{q:.10f}")
    lines.append("\t".join(f"{f:.4f}" for f in frequencies))
    lines.append(f"{smiles}\t{smiles}")
    lines.append(f"{inchi}\t{inchi}")
    return "\n".join(lines) + "\n"


def write_qm9_archive(path: Path, files: Sequence[tuple[str, str]]) -> None:
    """``dsgdb9nsd.xyz.tar.bz2`` with members (name, text), like the figshare archive."""
    atomic_write_bytes(path, tar_bz2_bytes([(n, t.encode("utf-8")) for n, t in files]))


# --------------------------------------------------------------------------------------------
# MatBench


def pymatgen_structure_dict(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray
                            ) -> dict[str, Any]:
    """A pymatgen ``Structure.as_dict()``-like dict (lattice rows Å, sites with fractional
    ``abc`` and Cartesian ``xyz``), written without pymatgen."""
    from ase.data import chemical_symbols

    cell = np.asarray(cell, dtype=np.float64)
    lengths = np.linalg.norm(cell, axis=1)

    def angle(u, v):
        return float(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v),
                                                  -1, 1))))

    frac = np.linalg.solve(cell.T, np.asarray(positions, dtype=np.float64).T).T
    sites = []
    for z, abc, xyz in zip(numbers, frac, positions):
        sym = chemical_symbols[int(z)]
        sites.append({"species": [{"element": sym, "occu": 1}], "abc": [float(v) for v in abc],
                      "xyz": [float(v) for v in xyz], "label": sym, "properties": {}})
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {
            "matrix": cell.tolist(),
            "pbc": [True, True, True],
            "a": float(lengths[0]), "b": float(lengths[1]), "c": float(lengths[2]),
            "alpha": angle(cell[1], cell[2]), "beta": angle(cell[0], cell[2]),
            "gamma": angle(cell[0], cell[1]),
            "volume": float(abs(np.linalg.det(cell))),
        },
        "properties": {},
        "sites": sites,
    }


def write_matbench(path: Path, ids: Sequence[str], structures: Sequence[dict[str, Any]],
                   column: str, values: Sequence[float]) -> None:
    """``matbench_<task>.json.gz``: gzipped pandas DataFrame JSON, orient ``"split"``
    (keys ``index``, ``columns``, ``data``) with columns ``structure`` and ``column``."""
    frame = {"index": list(ids), "columns": ["structure", column],
             "data": [[s, float(v)] for s, v in zip(structures, values)]}
    text = json.dumps(frame, separators=(",", ":"), allow_nan=False)
    atomic_write_bytes(path, gzip_bytes(text.encode("utf-8")))
