"""Build the shipped SMILES list ``openjmp/assets/smiles/organic_chno.smi``.

A small GDB-style enumeration: starting from CH4, NH3 and H2O, molecules grow by adding one heavy
atom (C, N, O) with a single, double or triple bond, or by closing a ring (3- to 6-membered),
keeping neutral, sanitizable molecules with conservative stability filters (no O–O, N–N or N–O
single bonds, no cumulated double bonds, no triple bonds in rings or on heteroatoms in rings,
no ring smaller than 5 atoms that contains a double bond). Each size level is subsampled with a
fixed seed to keep the breadth even across sizes. Run ``python -m
openjmp.data.generate.enumerate_smiles`` to rebuild the list (RDKit version recorded in the file
header; canonical SMILES may differ between RDKit versions, which is why the list is shipped).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

VALENCE = {"C": 4, "N": 3, "O": 2}
PER_LEVEL = {1: 10, 2: 30, 3: 80, 4: 250, 5: 400, 6: 400, 7: 350, 8: 250}


def _acceptable(mol) -> bool:
    from rdkit import Chem

    ri = mol.GetRingInfo()
    for atom in mol.GetAtoms():
        n_double = sum(1 for b in atom.GetBonds() if b.GetBondType() == Chem.BondType.DOUBLE)
        if n_double > 1:
            return False
        if atom.GetFormalCharge() != 0 or atom.GetNumRadicalElectrons() != 0:
            return False
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtom().GetSymbol(), bond.GetEndAtom().GetSymbol()
        if a != "C" and b != "C" and bond.GetBondType() == Chem.BondType.SINGLE:
            return False  # O-O, N-N, N-O single bonds: peroxides, hydrazines, hydroxylamines
        if a == "O" and b == "O":
            return False
        if bond.IsInRing() and bond.GetBondType() == Chem.BondType.TRIPLE:
            return False
        if bond.IsInRing() and bond.GetBondType() == Chem.BondType.DOUBLE:
            if min(len(r) for r in ri.BondRings() if bond.GetIdx() in r) < 5:
                return False
    for ring in ri.AtomRings():
        if len(ring) > 6:
            return False
    if ri.NumRings() > 2:
        return False
    return True


def _children(smiles: str) -> set[str]:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    out: set[str] = set()
    orders = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    n = mol.GetNumAtoms()
    for i, atom in enumerate(mol.GetAtoms()):
        free = atom.GetTotalNumHs()
        for element, valence in VALENCE.items():
            for order in (1, 2, 3):
                if order > free or order > valence:
                    continue
                rw = Chem.RWMol(mol)
                j = rw.AddAtom(Chem.Atom(element))
                rw.AddBond(i, j, orders[order])
                out.add(_finish(rw))
        # ring closures
        for k in range(i + 1, n):
            other = mol.GetAtomWithIdx(k)
            if mol.GetBondBetweenAtoms(i, k) is not None or other.GetTotalNumHs() < 1 or free < 1:
                continue
            path = Chem.GetShortestPath(mol, i, k)
            if not 3 <= len(path) <= 6:
                continue
            rw = Chem.RWMol(mol)
            rw.AddBond(i, k, Chem.BondType.SINGLE)
            out.add(_finish(rw))
    out.discard(None)
    return out


def _finish(rw) -> str | None:
    from rdkit import Chem

    mol = rw.GetMol()
    for atom in mol.GetAtoms():
        atom.SetNoImplicit(False)
        atom.SetNumExplicitHs(0)
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # noqa: BLE001 - invalid valence etc.: not a molecule
        return None
    if not _acceptable(mol):
        return None
    return Chem.MolToSmiles(mol)


def enumerate_smiles(max_heavy: int = 8, seed: int = 20240501) -> list[str]:
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    rng = np.random.default_rng(seed)
    level = ["C", "N", "O"]
    kept: list[str] = list(level)
    for size in range(2, max_heavy + 1):
        children: set[str] = set()
        for smi in level:
            children |= _children(smi)
        candidates = sorted(children)
        take = min(PER_LEVEL.get(size, 200), len(candidates))
        idx = np.sort(rng.choice(len(candidates), size=take, replace=False))
        level = [candidates[i] for i in idx]
        kept.extend(level)
    return kept


def main(argv: list[str] | None = None) -> int:
    from rdkit import rdBase

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "assets" / "smiles" / "organic_chno.smi"
    parser.add_argument("--out", type=Path, default=default)
    parser.add_argument("--max-heavy", type=int, default=8)
    parser.add_argument("--seed", type=int, default=20240501)
    args = parser.parse_args(argv)
    smiles = enumerate_smiles(args.max_heavy, args.seed)
    header = (f"# C/H/N/O molecules, <= {args.max_heavy} heavy atoms, enumerated by "
              f"openjmp.data.generate.enumerate_smiles (seed {args.seed}, RDKit "
              f"{rdBase.rdkitVersion}); {len(smiles)} canonical SMILES\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "\n".join(smiles) + "\n")
    print(f"wrote {len(smiles)} SMILES to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
