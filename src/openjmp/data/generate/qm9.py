"""``mini-qm9``: GFN2-xTB-relaxed small molecules with GFN2 properties, in the original QM9
archive layout (``dsgdb9nsd.xyz.tar.bz2`` of ``dsgdb9nsd_NNNNNN.xyz`` files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, chemical_symbols
from ase.units import Debye, Hartree, J, _amu, _c, _hplanck, _k, kB, mol

from openjmp.data.generate.calculators import GFN2
from openjmp.data.generate.common import Result, SkipStructure, item_rng
from openjmp.data.generate.molecules import _is_linear, embed, normal_modes, relax
from openjmp.data.generate.pools import molecule_pools
from openjmp.data.generate.writers import qm9_xyz_text, write_qm9_archive

NAME = "mini-qm9"
FILE = "dsgdb9nsd.xyz.tar.bz2"
SIZES = {"tiny": 3, "small": 400, "medium": 780}  # medium: the whole fine-tuning pool
TEMPERATURE = 298.15  # K, as QM9's U, H, G
PRESSURE = 101325.0  # Pa
#: the 15 properties of line 2, in order
PROPERTIES = ("A", "B", "C", "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve",
              "U0", "U", "H", "G", "Cv")
#: eigenvalue (eV/Å²/amu) → wavenumber (cm⁻¹): ω = sqrt(λ) in rad/s via eV/Å²/amu → SI
_EV = 1.0 / J  # J per eV
_LAMBDA_TO_OMEGA2 = _EV / (1e-20 * _amu)  # (rad/s)² per eV/Å²/amu
#: a relaxed molecule with an imaginary mode below this (cm⁻¹) is skipped (saddle point)
IMAGINARY_LIMIT_CM = -50.0

CARD = {
    "what": "Small neutral C/H/N/O molecules (2-8 heavy atoms) from the fine-tuning half of "
            "the shipped SMILES list (disjoint from mini-ani1x; rMD17/MD22 molecules "
            "excluded), each relaxed with GFN2-xTB.",
    "how": "RDKit ETKDG + MMFF embedding, GFN2 BFGS relaxation (fmax 0.005 eV/Å), GFN2 "
           "single point (orbitals, dipole, Mulliken charges) and GFN2 Hessian by central "
           "differences (harmonic frequencies). Molecules with an imaginary mode below "
           f"{IMAGINARY_LIMIT_CM} cm⁻¹ are skipped; small imaginary modes are reported as "
           "positive (|ω|).",
    "calculator": "GFN2-xTB via tblite (accuracy 1.0, electronic temperature 300 K). "
                  "Thermochemistry: rigid-rotor/harmonic-oscillator ideal gas at 298.15 K "
                  "and 1 atm, rotational symmetry number 1 (the QM9 papers' recipe differs).",
    "units": "QM9 xyz layout. Line 2: `gdb <i>` then A B C (GHz, rotational constants of the "
             "relaxed geometry), mu (Debye, |GFN2 dipole|), alpha (**NaN**: not available "
             "from tblite), homo lumo gap (Hartree, GFN2 orbital energies), r2 (**NaN**: "
             "not available), zpve (Hartree, harmonic), U0 (Hartree, GFN2 total energy + "
             "ZPVE), U, H, G (Hartree, at 298.15 K, RRHO), Cv (cal/mol/K, RRHO). Atom lines: "
             "symbol, x y z (Å), Mulliken charge (e, GFN2). Then the harmonic frequencies "
             "(cm⁻¹), the canonical RDKit SMILES twice and the InChI twice. Energies are "
             "total energies (not atomization energies), as in QM9.",
    "splits": "None in the archive (like QM9); JMP-style readers split with a seeded "
              "permutation.",
}


def plan(size: str, seed: int) -> list[dict[str, Any]]:
    _, fine = molecule_pools()
    rng = item_rng(seed, NAME + "/plan", 0)
    chosen = rng.choice(len(fine), size=min(SIZES[size], len(fine)), replace=False)
    return [{"smiles": fine[int(k)]} for k in chosen]


def rotational_constants_ghz(numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A ≥ B ≥ C (GHz) from the principal moments of inertia (a linear molecule has A = 0 in
    QM9's convention of an infinite constant; we write 0 for the undefined one)."""
    m = atomic_masses[numbers]
    r = positions - (m[:, None] * positions).sum(0) / m.sum()
    inertia = np.einsum("i,ij,ik->jk", m, r, r)
    inertia = np.trace(inertia) * np.eye(3) - inertia  # amu·Å²
    moments = np.sort(np.linalg.eigvalsh(inertia))  # amu·Å²
    si = moments * _amu * 1e-20  # kg m²
    with np.errstate(divide="ignore"):
        consts = np.where(si > 1e-50, _hplanck / (8 * np.pi**2 * si) / 1e9, 0.0)
    return consts  # ascending moments -> descending constants A, B, C


def thermo(energy_ev: float, freqs_cm: np.ndarray, numbers: np.ndarray, positions: np.ndarray
           ) -> dict[str, float]:
    """RRHO ideal-gas thermochemistry (eV, and Cv in cal/mol/K) at `TEMPERATURE`."""
    from ase.thermochemistry import IdealGasThermo

    atoms = Atoms(numbers=numbers, positions=positions)
    linear = _is_linear(positions)
    energies = freqs_cm * (_hplanck * _c * 100) * J  # J -> eV
    zpve = 0.5 * float(energies.sum())
    igt = IdealGasThermo(vib_energies=energies, geometry="linear" if linear else "nonlinear",
                         potentialenergy=energy_ev, atoms=atoms, symmetrynumber=1, spin=0,
                         ignore_imag_modes=True)
    h = igt.get_enthalpy(TEMPERATURE, verbose=False)
    g = igt.get_gibbs_energy(TEMPERATURE, PRESSURE, verbose=False)
    u = h - kB * TEMPERATURE
    x = energies / (kB * TEMPERATURE)
    cv_vib = float(np.sum(x**2 * np.exp(x) / np.expm1(x) ** 2))  # in units of k_B
    cv = (1.5 + (1.0 if linear else 1.5) + cv_vib) * _k * mol / 4.184  # cal/mol/K
    return {"zpve": zpve, "U0": energy_ev + zpve, "U": u, "H": h, "G": g, "Cv": float(cv)}


def work(item: dict[str, Any], rng: np.random.Generator) -> Result:
    from rdkit import Chem

    atoms = embed(item["smiles"], seed=int(rng.integers(2**31 - 1)))
    atoms, _ = relax(atoms, fmax=0.005, steps=500)
    numbers, pos = atoms.numbers, atoms.positions
    single = GFN2(numbers).compute(pos, orbitals=True)
    evals, _ = normal_modes(numbers, pos, atomic_masses[numbers])
    omega = np.sign(evals) * np.sqrt(np.abs(evals) * _LAMBDA_TO_OMEGA2)  # rad/s
    freqs = omega / (2 * np.pi * _c * 100)  # cm⁻¹
    if freqs.min() < IMAGINARY_LIMIT_CM:
        raise SkipStructure(f"xtb-relax: {item['smiles']} has an imaginary mode "
                            f"({freqs.min():.0f} cm⁻¹)")
    freqs = np.abs(freqs)
    th = thermo(single.energy, freqs, numbers, pos)
    abc = rotational_constants_ghz(numbers, pos)
    props = {
        "A": abc[0], "B": abc[1], "C": abc[2],
        "mu": float(np.linalg.norm(single.dipole) / Debye),
        "alpha": float("nan"),
        "homo": single.homo / Hartree, "lumo": single.lumo / Hartree,
        "gap": (single.lumo - single.homo) / Hartree,
        "r2": float("nan"),
        "zpve": th["zpve"] / Hartree, "U0": th["U0"] / Hartree, "U": th["U"] / Hartree,
        "H": th["H"] / Hartree, "G": th["G"] / Hartree, "Cv": th["Cv"],
    }
    mol_ = Chem.MolFromSmiles(item["smiles"])
    inchi = Chem.MolToInchi(mol_) if mol_ is not None else ""
    return {
        "numbers": numbers.astype(np.int64), "positions": pos.copy(),
        "charges": single.charges, "energy": np.asarray(single.energy),
        "forces": single.forces,
        "props": np.array([props[k] for k in PROPERTIES], dtype=np.float64),
        "frequencies": np.sort(freqs), "smiles": np.asarray(Chem.MolToSmiles(mol_)),
        "inchi": np.asarray(inchi),
    }


def write(kept: list[tuple[int, Result]], items: list[dict], out: Path, seed: int
          ) -> dict[str, Any]:
    files = []
    for k, (_, res) in enumerate(kept, start=1):
        text = qm9_xyz_text(k, [chemical_symbols[int(z)] for z in res["numbers"]],
                            res["positions"], res["charges"], res["props"], res["frequencies"],
                            str(res["smiles"]), str(res["inchi"]))
        files.append((f"dsgdb9nsd_{k:06d}.xyz", text))
    write_qm9_archive(out / FILE, files)
    return {"files": [FILE], "counts": {"molecules": len(kept)}, "splits": {},
            "nan_properties": ["alpha", "r2"]}
