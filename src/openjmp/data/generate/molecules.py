"""Organic molecules: the shipped SMILES list, RDKit 3D embedding, GFN2 relaxation, harmonic
(normal-mode) thermal sampling and Langevin MD.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
from ase import Atoms
from ase.units import fs, kB

from openjmp.data.generate.calculators import GFN2, GFN2Calculator
from openjmp.data.generate.common import SkipStructure

#: the SMILES list (C/H/N/O, neutral, <= 8 heavy atoms) shipped with openjmp
SMILES_RESOURCE = ("openjmp.assets.smiles", "organic_chno.smi")

#: rMD17 molecules (name -> SMILES); they are fine-tuning targets, excluded from mini-ani1x
RMD17_SMILES: dict[str, str] = {
    "ethanol": "CCO",
    "malonaldehyde": "O=CCC=O",
    "uracil": "O=C1C=CNC(=O)N1",
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "salicylic": "OC(=O)c1ccccc1O",
    "toluene": "Cc1ccccc1",
    "benzene": "c1ccccc1",
    "naphthalene": "c1ccc2ccccc2c1",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
}

#: MD22 molecules we can afford with GFN2 (name -> SMILES)
MD22_SMILES: dict[str, str] = {
    "Ac-Ala3-NHMe": "CC(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)NC",
}


def load_smiles_list() -> list[str]:
    """The shipped SMILES list, one canonical SMILES per line (comments start with ``#``)."""
    text = resources.files(SMILES_RESOURCE[0]).joinpath(SMILES_RESOURCE[1]).read_text()
    return [ln.split()[0] for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def canonical(smiles: str) -> str:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"invalid SMILES {smiles!r}")
    return Chem.MolToSmiles(mol)


def embed(smiles: str, seed: int) -> Atoms:
    """3D structure (with hydrogens) of ``smiles`` from RDKit ETKDG + MMFF (or UFF).

    Raises `SkipStructure` (``rdkit-embed``) if RDKit cannot parse or embed it.
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise SkipStructure(f"rdkit-embed: cannot parse SMILES {smiles!r}")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) % (2**31 - 1)
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise SkipStructure(f"rdkit-embed: embedding failed for {smiles!r}")
    try:
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
        else:
            AllChem.UFFOptimizeMolecule(mol, maxIters=500)
    except Exception:  # noqa: BLE001 - force-field pre-optimisation is optional
        pass
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    positions = mol.GetConformer().GetPositions()
    return Atoms(numbers=numbers, positions=positions)


def relax(atoms: Atoms, fmax: float = 0.01, steps: int = 300) -> tuple[Atoms, list[Atoms]]:
    """GFN2 BFGS relaxation. Returns (relaxed atoms, trajectory frames with energy/forces in
    ``info['energy']`` / ``arrays['gfn2_forces']``). Raises `SkipStructure` (``xtb-relax``) if it
    does not reach ``fmax`` (eV/Å) within ``steps``."""
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.calc = GFN2Calculator()
    frames: list[Atoms] = []

    def record():
        f = atoms.copy()
        f.info["energy"] = atoms.get_potential_energy()
        f.arrays["gfn2_forces"] = atoms.get_forces().copy()
        frames.append(f)

    opt = BFGS(atoms, logfile=None, maxstep=0.1)
    opt.attach(record, interval=1)
    converged = opt.run(fmax=fmax, steps=steps)
    if not converged:
        raise SkipStructure(f"xtb-relax: not converged to fmax={fmax} eV/Å in {steps} steps")
    out = atoms.copy()
    out.calc = None
    return out, frames


def hessian(numbers: np.ndarray, positions: np.ndarray, delta: float = 0.005) -> np.ndarray:
    """GFN2 Hessian (3n,3n), eV/Å², by central differences of forces (step ``delta`` Å)."""
    gfn2 = GFN2(numbers)
    n = len(numbers)
    h = np.zeros((3 * n, 3 * n))
    for k in range(3 * n):
        plus = positions.copy()
        plus.flat[k] += delta
        minus = positions.copy()
        minus.flat[k] -= delta
        fp = gfn2.compute(plus).forces.reshape(-1)
        fm = gfn2.compute(minus).forces.reshape(-1)
        h[k] = -(fp - fm) / (2 * delta)
    return 0.5 * (h + h.T)


def normal_modes(numbers: np.ndarray, positions: np.ndarray, masses: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational modes of a relaxed molecule.

    Returns (eigenvalues (m,) of the mass-weighted Hessian, eV/(Å²·amu); Cartesian
    displacement vectors per unit normal coordinate (m, n, 3), Å/(Å·amu^½)), skipping the
    six (five) rigid-body modes (the smallest |eigenvalues|).
    """
    h = hessian(numbers, positions)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    hw = h * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    evals, evecs = np.linalg.eigh(hw)
    n_rigid = 5 if _is_linear(positions) else 6
    keep = np.argsort(np.abs(evals))[n_rigid:]
    keep = np.sort(keep)
    modes = (evecs[:, keep] * inv_sqrt_m[:, None]).T.reshape(len(keep), len(numbers), 3)
    return evals[keep], modes


def _is_linear(positions: np.ndarray) -> bool:
    if len(positions) < 3:
        return True
    centred = positions - positions.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    return bool(s[1] < 1e-3 * s[0])


#: modes softer than this (eV/(Å²·amu), ~ 60 cm⁻¹) are sampled as if they had it: a harmonic
#: torsion with a tiny force constant would otherwise get an unphysically large amplitude
MIN_MODE_EIGENVALUE = 2.0e-4


def thermal_displacements(evals: np.ndarray, modes: np.ndarray, temperature: float,
                          rng: np.random.Generator) -> np.ndarray:
    """One classical harmonic Boltzmann sample at ``temperature`` (K): Cartesian displacement
    (n,3) Å. Normal coordinate q_i ~ N(0, kT/λ_i) (the ANI-1x normal-mode sampling idea, with
    the Boltzmann distribution rather than the energy-partition scheme)."""
    lam = np.maximum(np.abs(evals), MIN_MODE_EIGENVALUE)
    q = rng.normal(size=lam.shape) * np.sqrt(kB * temperature / lam)
    return np.tensordot(q, modes, axes=1)


def min_distance(positions: np.ndarray) -> float:
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    d[np.diag_indices(len(positions))] = np.inf
    return float(d.min())


def langevin_md(atoms: Atoms, *, temperature: float, n_frames: int, stride: int,
                equilibration: int, timestep_fs: float, friction_per_fs: float,
                rng: np.random.Generator) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """GFN2 Langevin MD; returns ``n_frames`` (positions Å, energy eV, forces eV/Å) taken
    every ``stride`` steps after ``equilibration`` steps. Velocities start Maxwell-Boltzmann."""
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

    atoms = atoms.copy()
    atoms.calc = GFN2Calculator()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    # centre of mass fixed by a constraint (Langevin's own fixcm=True is deprecated in ASE
    # 3.28 because it does not sample NVT exactly)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, timestep=timestep_fs * fs, temperature_K=temperature,
                   friction=friction_per_fs / fs, rng=rng, fixcm=False)
    dyn.run(equilibration)
    frames = []
    for _ in range(n_frames):
        dyn.run(stride)
        # the true GFN2 forces, not the ones FixCom projected for the integrator
        frames.append((atoms.get_positions().copy(), float(atoms.get_potential_energy()),
                       atoms.get_forces(apply_constraint=False).copy()))
    return frames


def md_trajectory_plan(names, frames: int, n_traj: int, size: str, equilibration: int) -> list[dict]:
    """Work items for MD datasets: ``n_traj`` independent trajectories per molecule sharing
    ``frames`` frames (the first ones get the remainder); tiny size: 20 equilibration steps."""
    per = [frames // n_traj + (1 if k < frames % n_traj else 0) for k in range(n_traj)]
    equilibration = equilibration if size != "tiny" else 20  # tiny: tests only
    return [
        {"molecule": name, "trajectory": k, "n_frames": per[k], "equilibration": equilibration}
        for name in names
        for k in range(n_traj)
    ]


def md_trajectory(smiles: str, item: dict, rng: np.random.Generator, *, relax_fmax: float, relax_steps: int,
                  temperature: float, stride: int, timestep_fs: float, friction_per_fs: float) -> dict:
    """Embed, relax, then Langevin MD; the frames as arrays (positions Å, energy eV, forces eV/Å)."""
    atoms = embed(smiles, seed=int(rng.integers(2**31 - 1)))
    atoms, _ = relax(atoms, fmax=relax_fmax, steps=relax_steps)
    frames = langevin_md(
        atoms, temperature=temperature, n_frames=item["n_frames"], stride=stride,
        equilibration=item["equilibration"], timestep_fs=timestep_fs, friction_per_fs=friction_per_fs, rng=rng,
    )
    return {
        "numbers": atoms.numbers.astype(np.int64),
        "positions": np.stack([f[0] for f in frames]),
        "energy": np.array([f[1] for f in frames]),
        "forces": np.stack([f[2] for f in frames]),
    }
