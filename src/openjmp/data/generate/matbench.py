"""``mini-matbench``: EMT bulk metals and random alloys on several lattices with formation
energy per atom and log10 bulk modulus (EOS fit); MatBench pandas-"split" json.gz layout
(``matbench_mp_e_form.json.gz``, ``matbench_log_kvrh.json.gz``)."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.units import GPa

from openjmp.data.generate.calculators import EMT_METALS, check_emt_elements, emt_calculator
from openjmp.data.generate.common import Result, SkipStructure, item_rng
from openjmp.data.generate.writers import pymatgen_structure_dict, write_matbench

NAME = "mini-matbench"
SIZES = {"tiny": 6, "small": 450, "medium": 6000}
#: lattice -> (ASE crystal structure, cubic cell?, allowed supercell repetitions)
LATTICES: dict[str, tuple[str, bool, tuple[tuple[int, int, int], ...]]] = {
    "fcc-prim": ("fcc", False, ((1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2))),
    "fcc-conv": ("fcc", True, ((1, 1, 1), (2, 1, 1))),
    "bcc-prim": ("bcc", False, ((1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2))),
    "bcc-conv": ("bcc", True, ((1, 1, 1), (2, 1, 1), (2, 2, 1))),
    "hcp": ("hcp", False, ((1, 1, 1), (2, 1, 1), (2, 2, 1), (1, 1, 2))),
    "sc": ("sc", False, ((1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2))),
}
EOS_STRAINS = np.linspace(-0.06, 0.06, 7)  # volume strains around the guess
RELAX_FMAX = 0.05
CHUNK_SIZE = 16
E_FORM_FILE = "matbench_mp_e_form.json.gz"
KVRH_FILE = "matbench_log_kvrh.json.gz"

CARD = {
    "what": "Bulk crystals of the EMT metals (Al, Ni, Cu, Pd, Ag, Pt, Au): elements and random "
            "binary/ternary substitutional alloys on fcc (primitive and conventional), bcc, "
            "hcp and simple-cubic lattices, 1-16 atoms per cell.",
    "how": "Lattice constant from the composition-weighted EMT equilibrium fcc lattice "
           "constants (Vegard), random substitution of sites, Birch-Murnaghan EOS fit "
           "(ase.eos, 7 volumes, ±6 % volume strain, ideal sites, re-centred once if the "
           "minimum falls outside), then positions relaxed with BFGS at the EOS volume "
           f"(fmax {RELAX_FMAX} eV/Å, ≤ 50 steps). Formation energy per atom = (E − Σ n_i "
           "μ_i)/N with μ_i the EMT energy per atom of the relaxed fcc element; log10 of the "
           "EOS bulk modulus in GPa (the real log_kvrh is log10 of the VRH bulk modulus).",
    "calculator": "ASE EMT (default parameters).",
    "units": "MatBench json.gz: pandas DataFrame JSON with orient 'split' (`index`, "
             "`columns`, `data`); index `mb-mp-e-form-NNN` / `mb-log-kvrh-NNN`; column "
             "`structure` holds pymatgen Structure dicts (lattice.matrix rows Å, sites with "
             "`abc` fractional and `xyz` Cartesian Å); `e_form` in eV/atom, "
             "`log10(K_VRH)` in log10(GPa). Both files hold the same structures.",
    "splits": "None in the file; MatBench folds come from KFold(5, shuffle=True, "
              "random_state=18012019) in the reader.",
}


def plan(size: str, seed: int) -> list[dict[str, Any]]:
    rng = item_rng(seed, NAME + "/plan", 0)
    names = sorted(LATTICES)
    items = []
    for i in range(SIZES[size]):
        lattice = names[int(rng.integers(len(names)))]
        reps = LATTICES[lattice][2]
        rep = reps[int(rng.integers(len(reps)))]
        n_el = int(rng.choice([1, 2, 2, 2, 3]))
        elements = [str(e) for e in rng.choice(EMT_METALS, size=n_el, replace=False)]
        items.append({"id": i, "lattice": lattice, "repeat": list(rep), "elements": elements})
    return items


@cache
def elemental_reference(symbol: str) -> tuple[float, float]:
    """(EMT equilibrium fcc lattice constant Å, energy per atom eV) of an element."""
    from ase.build import bulk
    from ase.eos import EquationOfState

    a0 = bulk(symbol, "fcc").cell.cellpar()[0] * np.sqrt(2)
    atoms = bulk(symbol, "fcc", a=a0)
    atoms.calc = emt_calculator()
    cell0 = atoms.cell[:].copy()
    vols, ens = [], []
    for s in np.linspace(0.94, 1.06, 9):
        atoms.set_cell(cell0 * s ** (1 / 3), scale_atoms=True)
        vols.append(atoms.get_volume())
        ens.append(atoms.get_potential_energy())
    v0, e0, _ = EquationOfState(vols, ens, eos="birchmurnaghan").fit()
    return float(a0 * (v0 / abs(np.linalg.det(cell0))) ** (1 / 3)), float(e0)


def build(item: dict[str, Any], rng: np.random.Generator) -> Atoms:
    from ase.build import bulk

    structure, cubic, _ = LATTICES[item["lattice"]]
    base = item["elements"][0]
    proto = bulk("Cu", structure, a=3.6, cubic=cubic) if structure != "hcp" else \
        bulk("Cu", "hcp", a=2.55, c=2.55 * 1.633)
    atoms = proto.repeat(tuple(item["repeat"]))
    n = len(atoms)
    if len(item["elements"]) == 1:
        symbols = [base] * n
    else:
        weights = rng.dirichlet(np.ones(len(item["elements"])))
        symbols = [str(s) for s in rng.choice(item["elements"], size=n, p=weights)]
    atoms.set_chemical_symbols(symbols)
    # atomic volume from Vegard's law on the fcc references (a³/4 per atom)
    vol_per_atom = np.mean([elemental_reference(s)[0] ** 3 / 4 for s in symbols])
    scale = (vol_per_atom * n / atoms.get_volume()) ** (1 / 3)
    atoms.set_cell(atoms.cell[:] * scale, scale_atoms=True)
    atoms.pbc = True
    return atoms


def eos(atoms: Atoms) -> tuple[float, float, float]:
    """Birch-Murnaghan fit on ideal sites: (V0 Å³, E0 eV, B eV/Å³)."""
    from ase.eos import EquationOfState

    cell0 = atoms.cell[:].copy()
    centre = 1.0
    for _ in range(2):
        vols, ens = [], []
        for s in centre * (1 + EOS_STRAINS):
            trial = atoms.copy()
            trial.calc = emt_calculator()
            trial.set_cell(cell0 * s ** (1 / 3), scale_atoms=True)
            vols.append(trial.get_volume())
            ens.append(trial.get_potential_energy())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a minimum outside the range is handled below
                v0, e0, b = EquationOfState(vols, ens, eos="birchmurnaghan").fit()
        except Exception as exc:  # noqa: BLE001 - ase raises plain exceptions on bad fits
            raise SkipStructure(f"eos-fit: {exc}") from exc
        if min(vols) <= v0 <= max(vols):
            return float(v0), float(e0), float(b)
        centre = v0 / abs(np.linalg.det(cell0))
    raise SkipStructure("eos-fit: minimum outside the sampled volumes twice")


def work(item: dict[str, Any], rng: np.random.Generator) -> Result:
    from ase.optimize import BFGS
    from ase.symbols import symbols2numbers

    check_emt_elements(np.array(symbols2numbers(item["elements"])), f"crystal {item['id']}")
    atoms = build(item, rng)
    v0, _, b = eos(atoms)
    if not b > 0:
        raise SkipStructure(f"eos-fit: non-positive bulk modulus {b}")
    atoms.set_cell(atoms.cell[:] * (v0 / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
    atoms.rattle(0.01, rng=rng)  # break the ideal symmetry so forces can relax the sites
    atoms.calc = emt_calculator()
    BFGS(atoms, logfile=None, maxstep=0.1).run(fmax=RELAX_FMAX, steps=50)
    energy = float(atoms.get_potential_energy())
    refs = sum(elemental_reference(s)[1] for s in atoms.get_chemical_symbols())
    return {
        "numbers": atoms.numbers.astype(np.int64),
        "positions": atoms.positions.copy(),
        "cell": np.asarray(atoms.cell[:], dtype=np.float64),
        "energy": np.asarray(energy),
        "forces": atoms.get_forces().copy(),
        "e_form": np.asarray((energy - refs) / len(atoms)),
        "log10_k": np.asarray(np.log10(b / GPa)),
    }


def write(kept: list[tuple[int, Result]], items: list[dict], out: Path, seed: int
          ) -> dict[str, Any]:
    structures = [pymatgen_structure_dict(r["numbers"], r["positions"], r["cell"])
                  for _, r in kept]
    width = int(np.floor(np.log10(max(1, len(kept))))) + 1
    write_matbench(out / E_FORM_FILE, [f"mb-mp-e-form-{i + 1:0{width}d}" for i in range(len(kept))],
                   structures, "e_form", [float(r["e_form"]) for _, r in kept])
    write_matbench(out / KVRH_FILE, [f"mb-log-kvrh-{i + 1:0{width}d}" for i in range(len(kept))],
                   structures, "log10(K_VRH)", [float(r["log10_k"]) for _, r in kept])
    return {"files": [E_FORM_FILE, KVRH_FILE], "counts": {"structures": len(kept)},
            "splits": {}}
