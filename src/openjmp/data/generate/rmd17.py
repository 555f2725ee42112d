"""``mini-rmd17``: GFN2-xTB Langevin MD at 500 K of rMD17 molecules; rMD17 npz layout
(``rmd17/npz_data/rmd17_<mol>.npz``, kcal/mol and kcal/mol/Å) with split index files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase.units import kcal, mol

from openjmp.data.generate.common import Result, item_rng
from openjmp.data.generate.molecules import RMD17_SMILES, md_trajectory, md_trajectory_plan
from openjmp.data.generate.writers import write_npz, write_text

NAME = "mini-rmd17"
EV_TO_KCAL_PER_MOL = 1.0 / (kcal / mol)
TEMPERATURE = 500.0
TIMESTEP_FS = 0.5
FRICTION_PER_FS = 0.01
STRIDE = 10  # steps between kept frames (5 fs)
EQUILIBRATION = 400  # steps (200 fs)
CHUNK_SIZE = 1
#: size -> (molecules, frames per molecule, independent trajectories per molecule)
SIZES: dict[str, tuple[tuple[str, ...], int, int]] = {
    "tiny": (("ethanol",), 4, 1),
    "small": (("ethanol", "malonaldehyde", "uracil", "aspirin"), 400, 2),
    "medium": (tuple(RMD17_SMILES), 2000, 4),
}
N_SPLITS = 5

CARD = {
    "what": "Thermal MD frames of rMD17 molecules (ethanol, malonaldehyde, uracil, aspirin for "
    "the small size; all nine non-azobenzene rMD17 molecules for medium).",
    "how": f"RDKit embedding, GFN2 relaxation, then Langevin MD (ASE) at {TEMPERATURE:.0f} K, "
    f"time step {TIMESTEP_FS} fs, friction {FRICTION_PER_FS} fs⁻¹, Maxwell-Boltzmann "
    f"start, {EQUILIBRATION} equilibration steps, one frame every {STRIDE} steps; each "
    "molecule's frames come from a few independent trajectories (different seeds), "
    "concatenated in order. The small size has 400 frames per molecule (the real "
    "rMD17 has 100,000; JMP uses 950 train + 50 val; with this size use e.g. 100 "
    "train + 50 val + the rest as test).",
    "calculator": "GFN2-xTB via tblite (accuracy 1.0, electronic temperature 300 K).",
    "units": "rMD17 npz: `nuclear_charges` (N,) int64, `coords` (F,N,3) Å, `energies` (F,) "
    "kcal/mol (total GFN2 energy), `forces` (F,N,3) kcal/mol/Å, `old_indices` "
    "(F,) int64 (frame index), `old_energies`/`old_forces` (copies of the GFN2 "
    "labels; in the real set these are the original MD17 labels).",
    "splits": f"`rmd17/splits/index_train_0k.csv` / `index_test_0k.csv`, k = 1..{N_SPLITS}: "
    "seeded disjoint index sets (half of the frames each, at most 1000), one integer "
    "per line, no header, like the real rMD17 split files.",
}


def plan(size: str, seed: int) -> list[dict[str, Any]]:
    names, frames, n_traj = SIZES[size]
    return md_trajectory_plan(names, frames, n_traj, size, EQUILIBRATION)


def work(item: dict[str, Any], rng: np.random.Generator) -> Result:
    return md_trajectory(RMD17_SMILES[item["molecule"]], item, rng, relax_fmax=0.02, relax_steps=400,
                         temperature=TEMPERATURE, stride=STRIDE, timestep_fs=TIMESTEP_FS,
                         friction_per_fs=FRICTION_PER_FS)


def write(
    kept: list[tuple[int, Result]], items: list[dict], out: Path, seed: int
) -> dict[str, Any]:
    by_mol: dict[str, list[Result]] = {}
    for i, res in kept:
        by_mol.setdefault(items[i]["molecule"], []).append(res)
    files, counts = [], {}
    n_split = None
    for name, parts in by_mol.items():
        if any(not np.array_equal(p["numbers"], parts[0]["numbers"]) for p in parts):
            raise RuntimeError(f"{NAME}: trajectories of {name} have different atom orders")
        coords = np.concatenate([p["positions"] for p in parts])
        energies = np.concatenate([p["energy"] for p in parts]) * EV_TO_KCAL_PER_MOL
        forces = np.concatenate([p["forces"] for p in parts]) * EV_TO_KCAL_PER_MOL
        rel = f"rmd17/npz_data/rmd17_{name}.npz"
        write_npz(
            out / rel,
            {
                "nuclear_charges": parts[0]["numbers"].astype(np.int64),
                "coords": coords,
                "energies": energies,
                "forces": forces,
                "old_indices": np.arange(len(energies), dtype=np.int64),
                "old_energies": energies.copy(),
                "old_forces": forces.copy(),
            },
        )
        files.append(rel)
        counts[f"frames_{name}"] = int(len(energies))
        n_split = len(energies) if n_split is None else min(n_split, len(energies))
    if n_split:
        half = min(1000, n_split // 2)
        for k in range(1, N_SPLITS + 1):
            perm = item_rng(seed, NAME + "/split", k).permutation(n_split)
            for kind, idx in (
                ("train", np.sort(perm[:half])),
                ("test", np.sort(perm[half : 2 * half])),
            ):
                rel = f"rmd17/splits/index_{kind}_0{k}.csv"
                write_text(out / rel, "".join(f"{int(i)}\n" for i in idx))
                files.append(rel)
    counts["molecules"] = len(by_mol)
    counts["frames"] = int(sum(v for k, v in counts.items() if k.startswith("frames_")))
    return {"files": files, "counts": counts, "splits": {}}
