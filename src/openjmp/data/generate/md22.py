"""``mini-md22``: GFN2-xTB Langevin MD at 500 K of the Ac-Ala3-NHMe peptide (42 atoms);
MD22 npz layout (``md22_<mol>.npz``, kcal/mol and kcal/mol/Å, energies of shape (F,1))."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.data.generate.common import Result
from openjmp.data.generate.molecules import MD22_SMILES, md_trajectory, md_trajectory_plan
from openjmp.data.generate.rmd17 import EV_TO_KCAL_PER_MOL
from openjmp.data.generate.writers import write_npz

NAME = "mini-md22"
TEMPERATURE = 500.0
TIMESTEP_FS = 0.5
FRICTION_PER_FS = 0.01
STRIDE = 10
EQUILIBRATION = 300
CHUNK_SIZE = 1
#: size -> (frames, independent trajectories)
SIZES = {"tiny": (3, 1), "small": (300, 2), "medium": (3000, 8)}

CARD = {
    "what": "Thermal MD frames of the Ac-Ala3-NHMe peptide (42 atoms; the smallest MD22 molecule).",
    "how": f"RDKit embedding, GFN2 relaxation (fmax 0.05 eV/Å), Langevin MD at "
    f"{TEMPERATURE:.0f} K (time step {TIMESTEP_FS} fs, friction {FRICTION_PER_FS} fs⁻¹, "
    f"{EQUILIBRATION} equilibration steps, one frame every {STRIDE} steps) in a few "
    "independent trajectories, concatenated.",
    "calculator": "GFN2-xTB via tblite (accuracy 1.0, electronic temperature 300 K).",
    "units": "MD22 npz: `z` (N,) int64, `R` (F,N,3) Å, `E` (F,1) kcal/mol (total), `F` "
    "(F,N,3) kcal/mol/Å, scalars `E_min/E_max/E_mean/E_var/F_min/F_max/F_mean/F_var`, "
    "strings `name`, `theory` ('GFN2-xTB, 500K'), `e_unit`, `r_unit`, `type`, "
    "`code_version`, `md5`, and `perms` (1,N) (identity only). Loads without "
    "allow_pickle.",
    "splits": "None in the file (like MD22); JMP-style readers split with a seeded permutation.",
}


def plan(size: str, seed: int) -> list[dict[str, Any]]:
    frames, n_traj = SIZES[size]
    return md_trajectory_plan(MD22_SMILES, frames, n_traj, size, EQUILIBRATION)


def work(item: dict[str, Any], rng: np.random.Generator) -> Result:
    return md_trajectory(MD22_SMILES[item["molecule"]], item, rng, relax_fmax=0.05, relax_steps=500,
                         temperature=TEMPERATURE, stride=STRIDE, timestep_fs=TIMESTEP_FS,
                         friction_per_fs=FRICTION_PER_FS)


def write(
    kept: list[tuple[int, Result]], items: list[dict], out: Path, seed: int
) -> dict[str, Any]:
    by_mol: dict[str, list[Result]] = {}
    for i, res in kept:
        by_mol.setdefault(items[i]["molecule"], []).append(res)
    files, counts = [], {}
    for name, parts in by_mol.items():
        z = parts[0]["numbers"].astype(np.int64)
        r = np.concatenate([p["positions"] for p in parts])
        e = (np.concatenate([p["energy"] for p in parts]) * EV_TO_KCAL_PER_MOL)[:, None]
        f = np.concatenate([p["forces"] for p in parts]) * EV_TO_KCAL_PER_MOL
        digest = hashlib.md5(r.tobytes() + e.tobytes() + f.tobytes()).hexdigest()
        arrays = {
            "z": z,
            "R": r,
            "E": e,
            "F": f,
            "E_min": np.float64(e.min()),
            "E_max": np.float64(e.max()),
            "E_mean": np.float64(e.mean()),
            "E_var": np.float64(e.var()),
            "F_min": np.float64(f.min()),
            "F_max": np.float64(f.max()),
            "F_mean": np.float64(f.mean()),
            "F_var": np.float64(f.var()),
            "name": np.asarray(name),
            "theory": np.asarray(f"GFN2-xTB, {TEMPERATURE:.0f}K"),
            "e_unit": np.asarray("kcal/mol"),
            "r_unit": np.asarray("Ang"),
            "type": np.asarray("d"),
            "code_version": np.asarray("openjmp-mini"),
            "md5": np.asarray(digest),
            "perms": np.arange(len(z), dtype=np.int64)[None],
        }
        rel = f"md22_{name}.npz"
        write_npz(out / rel, arrays)
        files.append(rel)
        counts[f"frames_{name}"] = int(len(e))
    counts["molecules"] = len(by_mol)
    counts["frames"] = int(sum(v for k, v in counts.items() if k.startswith("frames_")))
    return {"files": files, "counts": counts, "splits": {}}
