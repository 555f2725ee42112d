"""``mini-oc20``: adsorbates on fcc(111)/(100) EMT metal slabs (some alloyed), frames along EMT
BFGS relaxations plus slightly rattled frames of the relaxed system; written as aselmdb
(one file per split, split by system).

Tags follow OC20: 0 = sub-surface slab (the two bottom layers, fixed), 1 = surface (the two top
layers, free), 2 = adsorbate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from openjmp.data.generate.calculators import EMT_METALS, check_emt_elements, emt_calculator
from openjmp.data.generate.common import Result, item_rng, split_names, stable_uid
from openjmp.data.generate.writers import aselmdb_row, write_aselmdb

NAME = "mini-oc20"

#: adsorbate name -> (symbols, positions relative to the binding atom, Å)
ADSORBATES: dict[str, tuple[str, list[list[float]]]] = {
    "H": ("H", [[0, 0, 0]]),
    "O": ("O", [[0, 0, 0]]),
    "C": ("C", [[0, 0, 0]]),
    "N": ("N", [[0, 0, 0]]),
    "OH": ("OH", [[0, 0, 0], [0, 0, 0.97]]),
    "CO": ("CO", [[0, 0, 0], [0, 0, 1.15]]),
    "CH": ("CH", [[0, 0, 0], [0, 0, 1.09]]),
    "NH": ("NH", [[0, 0, 0], [0, 0, 1.02]]),
    "CH2": ("CH2", [[0, 0, 0], [0.0, 0.89, 0.63], [0.0, -0.89, 0.63]]),
    "NH2": ("NH2", [[0, 0, 0], [0.0, 0.82, 0.58], [0.0, -0.82, 0.58]]),
    "OH2": ("OH2", [[0, 0, 0], [0.0, 0.76, 0.59], [0.0, -0.76, 0.59]]),
    "N2": ("NN", [[0, 0, 0], [0, 0, 1.12]]),
    "CHO": ("CHO", [[0, 0, 0], [0.0, 0.95, 0.55], [0.0, -0.95, 0.7]]),
    "COH": ("COH", [[0, 0, 0], [0, 0, 1.35], [0.0, 0.9, 1.65]]),
}
SITES = {"111": ("ontop", "bridge", "fcc", "hcp"), "100": ("ontop", "bridge", "hollow")}

SIZES = {"tiny": 3, "small": 110, "medium": 2500}
#: relaxation settings (recorded in the card)
RELAX_FMAX = 0.05
RELAX_STEPS = {"tiny": 8, "small": 40, "medium": 60}
#: keep every k-th relaxation frame (the first and the last always): consecutive BFGS frames
#: are nearly identical, and the shipped size must stay small
KEEP_EVERY = {"tiny": 1, "small": 2, "medium": 1}
N_RATTLED = 3
RATTLE_STD = 0.03  # Å, on free atoms only: thermal-scale, not large random displacements
HEIGHT = {"ontop": 1.9, "bridge": 1.7, "fcc": 1.5, "hcp": 1.5, "hollow": 1.3}

CARD = {
    "what": "Adsorbates (H, O, C, N, OH, CO, CH, NH, CH2, NH2, H2O, N2, CHO, COH) on fcc(111) "
            "and fcc(100) slabs (3x3 surface cell, 4 layers, 7 Å vacuum each side) of the EMT "
            "metals Al, Ni, Cu, Pd, Ag, Pt, Au; a third of the slabs are random binary alloys "
            "(10-50 % of the slab atoms substituted).",
    "how": f"Adsorbate placed at a random site (ontop/bridge/fcc/hcp or hollow) with a random "
           f"in-plane offset (±0.3 Å) and tilt, then an EMT BFGS relaxation (fmax {RELAX_FMAX} "
           f"eV/Å, maxstep 0.2 Å, at most {RELAX_STEPS['small']} steps for the small size) with "
           f"the two bottom layers fixed; every {KEEP_EVERY['small']}nd relaxation frame is kept "
           f"for the small size (every frame for medium; first and last always), plus {N_RATTLED} frames of the relaxed system with Gaussian "
           f"displacements σ = {RATTLE_STD} Å on the free atoms.",
    "calculator": "ASE EMT (ase.calculators.emt.EMT, default parameters). EMT's H, C, N, O "
                  "parameters are rough (the method is fit for fcc metals): adsorbate "
                  "chemistry is qualitative only; what matters here is a consistent, smooth "
                  "potential-energy surface in the OC20 layout.",
    "units": "aselmdb rows: positions/cell Å, energy eV (total EMT energy, not an adsorption "
             "energy), forces eV/Å. Row key_value_pairs: sid (system id), fid (frame index "
             "within the system), kind ('relax' or 'rattle'); data: adsorbate, bulk, "
             "miller_index, site. tags 0/1/2 as OC20; FixAtoms constraint on tag-0 atoms.",
    "splits": "By system (sid): 80/10/10 train/val/test, seeded; one aselmdb per split "
              "(`<split>/data.0000.aselmdb`).",
}


def plan(size: str, seed: int) -> list[dict[str, Any]]:
    rng = item_rng(seed, NAME + "/plan", 0)
    items = []
    for i in range(SIZES[size]):
        facet = str(rng.choice(["111", "100"]))
        metal = str(rng.choice(EMT_METALS))
        alloy = None
        fraction = 0.0
        if rng.random() < 1 / 3:
            alloy = str(rng.choice([m for m in EMT_METALS if m != metal]))
            fraction = float(rng.uniform(0.1, 0.5))
        items.append({
            "sid": i, "facet": facet, "metal": metal, "alloy": alloy, "fraction": fraction,
            "adsorbate": str(rng.choice(sorted(ADSORBATES))),
            "site": str(rng.choice(SITES[facet])),
            "steps": RELAX_STEPS[size], "keep_every": KEEP_EVERY[size],
        })
    return items


def build_system(item: dict[str, Any], rng: np.random.Generator) -> Atoms:
    """Slab + adsorbate with OC20 tags and the bottom two layers fixed."""
    from ase.build import add_adsorbate, fcc100, fcc111
    from ase.constraints import FixAtoms

    build = fcc111 if item["facet"] == "111" else fcc100
    slab = build(item["metal"], size=(3, 3, 4), vacuum=7.0, periodic=True)
    layer = slab.get_tags()  # ase.build: 1 = top layer ... 4 = bottom
    if item["alloy"]:
        n_sub = max(1, int(round(item["fraction"] * len(slab))))
        idx = rng.choice(len(slab), size=n_sub, replace=False)
        symbols = slab.get_chemical_symbols()
        for k in idx:
            symbols[k] = item["alloy"]
        slab.set_chemical_symbols(symbols)
    symbols, rel = ADSORBATES[item["adsorbate"]]
    ads = Atoms(symbols, positions=rel)
    ads.rotate(float(rng.uniform(0, 360)), "z")
    ads.rotate(float(rng.uniform(0, 20)), "x")
    offset = tuple(rng.uniform(-0.3, 0.3, size=2))
    add_adsorbate(slab, ads, HEIGHT[item["site"]], position=item["site"], offset=None)
    n_slab = len(layer)
    slab.positions[n_slab:, :2] += offset
    tags = np.full(len(slab), 2, dtype=np.int64)
    tags[:n_slab] = np.where(layer <= 2, 1, 0)
    slab.set_tags(tags)
    slab.set_constraint(FixAtoms(indices=np.flatnonzero(tags == 0)))
    return slab


def work(item: dict[str, Any], rng: np.random.Generator) -> Result:
    from ase.optimize import BFGS
    from ase.symbols import symbols2numbers

    # before building: ase.build cannot even guess a lattice constant for some elements
    wanted = symbols2numbers([item["metal"]] + ([item["alloy"]] if item["alloy"] else []))
    wanted += list(Atoms(ADSORBATES[item["adsorbate"]][0]).numbers)
    check_emt_elements(np.array(wanted), f"system {item['sid']}")
    atoms = build_system(item, rng)
    check_emt_elements(atoms.numbers, f"system {item['sid']}")
    atoms.calc = emt_calculator()
    frames: list[tuple[np.ndarray, float, np.ndarray]] = []

    def record():
        frames.append((atoms.get_positions().copy(), float(atoms.get_potential_energy()),
                       atoms.get_forces(apply_constraint=False).copy()))

    opt = BFGS(atoms, logfile=None, maxstep=0.2)
    opt.attach(record, interval=1)
    opt.run(fmax=RELAX_FMAX, steps=item["steps"])
    every = int(item.get("keep_every", 1))
    frames = [f for k, f in enumerate(frames) if k % every == 0 or k == len(frames) - 1]
    n_relax = len(frames)
    free = atoms.get_tags() != 0
    relaxed = atoms.get_positions().copy()
    for _ in range(N_RATTLED):
        pos = relaxed.copy()
        pos[free] += rng.normal(scale=RATTLE_STD, size=(int(free.sum()), 3))
        atoms.set_positions(pos, apply_constraint=False)
        record()
    return {
        "numbers": atoms.numbers.astype(np.int64),
        "positions": np.stack([f[0] for f in frames]),
        "energy": np.array([f[1] for f in frames]),
        "forces": np.stack([f[2] for f in frames]),
        "cell": np.asarray(atoms.cell[:], dtype=np.float64),
        "tags": atoms.get_tags().astype(np.int64),
        "kind": np.array([0] * n_relax + [1] * N_RATTLED, dtype=np.int64),
    }


def write(kept: list[tuple[int, Result]], items: list[dict], out: Path, seed: int
          ) -> dict[str, Any]:
    split = split_names(len(kept), (0.8, 0.1, 0.1), item_rng(seed, NAME + "/split", 0))
    rows: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    systems = {"train": 0, "val": 0, "test": 0}
    for (i, res), s in zip(kept, split):
        name = ("train", "val", "test")[int(s)]
        systems[name] += 1
        item = items[i]
        fixed = np.flatnonzero(res["tags"] == 0)
        for fid in range(len(res["energy"])):
            rows[name].append(aselmdb_row(
                numbers=res["numbers"], positions=res["positions"][fid], cell=res["cell"],
                pbc=np.array([True, True, True]), energy=float(res["energy"][fid]),
                forces=res["forces"][fid], tags=res["tags"], fixed_indices=fixed,
                unique_id=stable_uid(NAME, seed, item["sid"], fid), calculator="emt",
                key_value_pairs={"sid": int(item["sid"]), "fid": fid,
                                 "kind": "relax" if res["kind"][fid] == 0 else "rattle"},
                data={"adsorbate": item["adsorbate"],
                      "bulk": item["metal"] + (f"-{item['alloy']}" if item["alloy"] else ""),
                      "miller_index": [int(c) for c in item["facet"]], "site": item["site"]},
            ))
    files = []
    for name, split_rows in rows.items():
        path = out / name / "data.0000.aselmdb"
        write_aselmdb(path, split_rows, metadata={"dataset": NAME, "level": "EMT"})
        files.append(str(path.relative_to(out)))
    n_atoms = sum(len(r["numbers"]) * len(r["energy"]) for _, r in kept)
    return {
        "files": files,
        "counts": {"systems": len(kept), "frames": sum(len(v) for v in rows.values()),
                   "atoms_total": n_atoms},
        "splits": {k: {"systems": systems[k], "frames": len(v)} for k, v in rows.items()},
    }
