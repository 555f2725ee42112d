"""Disjoint molecule pools drawn from the shipped SMILES list: pre-training (mini-ani1x) and
fine-tuning (mini-qm9) never share a molecule, and the rMD17/MD22 molecules are kept out of
both (they are fine-tuning targets of their own)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from openjmp.data.generate.molecules import (
    MD22_SMILES,
    RMD17_SMILES,
    canonical,
    load_smiles_list,
)

#: fixed seed of the pool partition (independent of the suite seed, so that a molecule's pool
#: never changes between runs with different seeds)
POOL_SEED = 9


@lru_cache(maxsize=1)
def molecule_pools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(pretraining SMILES, fine-tuning SMILES): a fixed random half/half partition of the
    shipped list (molecules with >= 2 heavy atoms), minus the rMD17/MD22 molecules."""
    from rdkit import Chem

    excluded = {canonical(s) for s in (*RMD17_SMILES.values(), *MD22_SMILES.values())}
    smiles = [s for s in load_smiles_list()
              if s not in excluded and Chem.MolFromSmiles(s).GetNumHeavyAtoms() >= 2]
    perm = np.random.default_rng(POOL_SEED).permutation(len(smiles))
    half = len(smiles) // 2
    pre = tuple(smiles[i] for i in perm[:half])
    fine = tuple(smiles[i] for i in perm[half:])
    return pre, fine
