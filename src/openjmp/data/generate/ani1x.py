"""``mini-ani1x``: off-equilibrium conformers of many small C/H/N/O molecules by harmonic
normal-mode sampling at 300-1000 K around GFN2-xTB minima; ANI-1x HDF5 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase.data import atomic_masses
from ase.units import Hartree

from openjmp.data.generate.calculators import GFN2
from openjmp.data.generate.common import Result, SkipStructure, item_rng
from openjmp.data.generate.molecules import (
    embed,
    min_distance,
    normal_modes,
    relax,
    thermal_displacements,
)
from openjmp.data.generate.pools import molecule_pools
from openjmp.data.generate.writers import write_ani1x_h5

NAME = "mini-ani1x"
FILE = "ani1x-release.h5"
#: (molecules, conformers per molecule)
SIZES = {"tiny": (2, 3), "small": (250, 16), "medium": (750, 60)}
T_RANGE_K = (300.0, 1000.0)
#: a sample closer than this (Å) between any two atoms is redrawn
MIN_DISTANCE = 0.7
#: level key names: the real ANI-1x names so every ANI-1x reader works; the values are GFN2-xTB
LEVEL = "wb97x_dz"

CARD = {
    "what": "Off-equilibrium conformers of small neutral C/H/N/O molecules (2-8 heavy atoms) "
            "from the SMILES list shipped in `openjmp/assets/smiles/organic_chno.smi` (the "
            "pre-training half of a fixed partition; the other half is mini-qm9's pool; "
            "rMD17/MD22 molecules are excluded).",
    "how": "RDKit ETKDG embedding + MMFF, GFN2-xTB BFGS relaxation (fmax 0.01 eV/Å), GFN2 "
           "Hessian by central differences (0.005 Å), then classical harmonic Boltzmann "
           "sampling of the normal coordinates (q_i ~ N(0, kT/λ_i), soft modes floored at "
           f"λ = 2e-4 eV/Å²/amu) at a temperature drawn uniformly in {T_RANGE_K} K per "
           "conformer; samples with two atoms closer than 0.7 Å are redrawn.",
    "calculator": "GFN2-xTB via tblite (accuracy 1.0, electronic temperature 300 K, max 250 "
                  "SCF iterations), neutral closed shell.",
    "units": "ANI-1x layout: one group per formula (element order C H N O), `atomic_numbers` "
             "(Na,) uint8, `coordinates` (Nc,Na,3) float32 Å, `wb97x_dz.energy` (Nc,) float64 "
             "Hartree (total energy), `wb97x_dz.forces` (Nc,Na,3) float32 Hartree/Å. "
             "**The level is GFN2-xTB, not ωB97x/6-31G(d)**: the real key names are kept so "
             "that any ANI-1x reader works unchanged.",
    "splits": "None in the file (like ANI-1x); JMP-style readers split by formula.",
}


def plan(size: str, seed: int) -> list[dict[str, Any]]:
    n_mol, n_conf = SIZES[size]
    pre, _ = molecule_pools()
    rng = item_rng(seed, NAME + "/plan", 0)
    chosen = rng.choice(len(pre), size=min(n_mol, len(pre)), replace=False)
    return [{"smiles": pre[int(k)], "n_conformers": n_conf} for k in chosen]


def work(item: dict[str, Any], rng: np.random.Generator) -> Result:
    atoms = embed(item["smiles"], seed=int(rng.integers(2**31 - 1)))
    atoms, _ = relax(atoms, fmax=0.01, steps=400)
    numbers = atoms.numbers
    masses = atomic_masses[numbers]
    evals, modes = normal_modes(numbers, atoms.positions, masses)
    gfn2 = GFN2(numbers)
    positions, energies, forces, temps = [], [], [], []
    for _ in range(item["n_conformers"]):
        for _attempt in range(20):
            t = float(rng.uniform(*T_RANGE_K))
            pos = atoms.positions + thermal_displacements(evals, modes, t, rng)
            if min_distance(pos) >= MIN_DISTANCE:
                break
        else:
            raise SkipStructure(f"sampling: no sample of {item['smiles']} passed the "
                                f"{MIN_DISTANCE} Å distance check")
        res = gfn2.compute(pos)
        positions.append(pos)
        energies.append(res.energy)
        forces.append(res.forces)
        temps.append(t)
    return {
        "numbers": numbers.astype(np.int64),
        "positions": np.stack(positions),
        "energy": np.array(energies),
        "forces": np.stack(forces),
        "temperature": np.array(temps),
        "smiles": np.asarray(item["smiles"]),
    }


def hill_formula(numbers: np.ndarray) -> str:
    """ANI-1x style group name: C, H, N, O counts in that order (e.g. ``C2H6O``)."""
    counts = {z: int(np.sum(numbers == z)) for z in (6, 1, 7, 8)}
    out = ""
    for z, sym in ((6, "C"), (1, "H"), (7, "N"), (8, "O")):
        if counts[z]:
            out += sym + (str(counts[z]) if counts[z] > 1 else "")
    return out


def write(kept: list[tuple[int, Result]], items: list[dict], out: Path, seed: int
          ) -> dict[str, Any]:
    by_formula: dict[str, list[Result]] = {}
    for _, res in kept:
        # order atoms by element (C,H,N,O) inside a formula group so molecules of the same
        # formula share one atomic_numbers row, as in ANI-1x
        order = np.argsort([(6, 1, 7, 8).index(int(z)) for z in res["numbers"]], kind="stable")
        res = dict(res, numbers=res["numbers"][order], positions=res["positions"][:, order],
                   forces=res["forces"][:, order])
        by_formula.setdefault(hill_formula(res["numbers"]), []).append(res)
    groups = {}
    for formula, members in by_formula.items():
        groups[formula] = {
            "atomic_numbers": members[0]["numbers"].astype(np.uint8),
            "coordinates": np.concatenate([m["positions"] for m in members]).astype(np.float32),
            f"{LEVEL}.energy": np.concatenate([m["energy"] for m in members]) / Hartree,
            f"{LEVEL}.forces": (np.concatenate([m["forces"] for m in members]) / Hartree
                                ).astype(np.float32),
        }
    write_ani1x_h5(out / FILE, groups)
    n_conf = sum(len(r["energy"]) for _, r in kept)
    return {"files": [FILE],
            "counts": {"molecules": len(kept), "formulas": len(groups), "conformers": n_conf},
            "splits": {}}
