"""``mini-transition1x``: GFN2-xTB climbing-image NEB paths of small organic reactions; frames
along the NEB iterations; Transition1x HDF5 layout (``/data/<formula>/<rxn>``, split links)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from openjmp.data.generate.calculators import GFN2Calculator
from openjmp.data.generate.common import Result, SkipStructure, item_rng, split_names
from openjmp.data.generate.molecules import relax
from openjmp.data.generate.writers import write_transition1x_h5

NAME = "mini-transition1x"
FILE = "transition1x-release.h5"
#: the real key names, so Transition1x readers work unchanged; the values are GFN2-xTB
LEVEL = "wB97x_6-31G(d)"

#: name -> (reactant, product): SMILES with every atom (hydrogens included) atom-mapped, so the
#: two endpoints share one atom order
REACTIONS: dict[str, tuple[str, str]] = {
    "hcn-isomerisation": ("[H:3][C:1]#[N:2]", "[H:3][N+:2]#[C-:1]"),
    "keto-enol-acetaldehyde": ("[C:1]([H:4])([H:5])([H:6])[C:2](=[O:3])[H:7]",
                               "[C:1]([H:5])([H:6])=[C:2]([O:3][H:4])[H:7]"),
    "formamide-tautomer": ("[H:4][C:1](=[O:2])[N:3]([H:5])[H:6]",
                           "[H:4][C:1]([O:2][H:5])=[N:3][H:6]"),
    "nitrosomethane-oxime": ("[C:1]([H:4])([H:5])([H:6])[N:2]=[O:3]",
                             "[C:1]([H:5])([H:6])=[N:2][O:3][H:4]"),
    "keto-enol-acetone": ("[C:1]([H:5])([H:6])([H:7])[C:2](=[O:4])[C:3]([H:8])([H:9])[H:10]",
                          "[C:1]([H:6])([H:7])=[C:2]([O:4][H:5])[C:3]([H:8])([H:9])[H:10]"),
    "formic-acid-dehydration": ("[H:4][C:1](=[O:2])[O:3][H:5]", "[C-:1]#[O+:2].[H:4][O:3][H:5]"),
    "methanol-dehydrogenation": ("[C:1]([H:3])([H:4])([H:5])[O:2][H:6]",
                                 "[C:1]([H:4])([H:5])=[O:2].[H:3][H:6]"),
    "ethylamine-elimination": (
        "[C:1]([H:4])([H:5])([H:6])[C:2]([H:7])([H:8])[N:3]([H:9])[H:10]",
        "[C:1]([H:5])([H:6])=[C:2]([H:7])[H:8].[H:4][N:3]([H:9])[H:10]"),
    "diels-alder": (
        "[C:1]([H:7])([H:8])=[C:2]([H:9])[C:3]([H:10])=[C:4]([H:11])[H:12]."
        "[C:5]([H:13])([H:14])=[C:6]([H:15])[H:16]",
        "[C:1]1([H:7])([H:8])[C:2]([H:9])=[C:3]([H:10])[C:4]([H:11])([H:12])"
        "[C:5]([H:13])([H:14])[C:6]1([H:15])[H:16]"),
    "cyclobutene-ring-opening": (
        "[C:1]1([H:5])([H:6])[C:2]([H:7])=[C:3]([H:8])[C:4]1([H:9])[H:10]",
        "[C:1]([H:5])([H:6])=[C:2]([H:7])[C:3]([H:8])=[C:4]([H:9])[H:10]"),
    "cyanic-isocyanic": ("[H:4][O:1][C:2]#[N:3]", "[O:1]=[C:2]=[N:3][H:4]"),
    "oxirane-acetaldehyde": ("[C:1]1([H:4])([H:5])[O:3][C:2]1([H:6])[H:7]",
                             "[C:1]([H:4])([H:5])([H:6])[C:2](=[O:3])[H:7]"),
    "pyridone-tautomer": (
        "[O:1]=[C:2]1[N:3]([H:12])[C:4]([H:8])=[C:5]([H:9])[C:6]([H:10])=[C:7]1[H:11]",
        "[O:1]([H:12])[c:2]1[n:3][c:4]([H:8])[c:5]([H:9])[c:6]([H:10])[c:7]1[H:11]"),
    "formaldehyde-decomposition": ("[H:3][C:1](=[O:2])[H:4]", "[C-:1]#[O+:2].[H:3][H:4]"),
    "isocyanide-nitrile": ("[C:1]([H:4])([H:5])([H:6])[N+:2]#[C-:3]",
                           "[C:1]([H:4])([H:5])([H:6])[C:3]#[N:2]"),
    "acetamide-tautomer": ("[C:1]([H:5])([H:6])([H:7])[C:2](=[O:3])[N:4]([H:8])[H:9]",
                           "[C:1]([H:5])([H:6])([H:7])[C:2]([O:3][H:8])=[N:4][H:9]"),
    "ethyl-formate-retro-ene": (
        "[H:6][C:1](=[O:2])[O:3][C:4]([H:7])([H:8])[C:5]([H:9])([H:10])[H:11]",
        "[H:6][C:1]([O:2][H:9])=[O:3].[C:4]([H:7])([H:8])=[C:5]([H:10])[H:11]"),
    "ketene-hydration": ("[C:1]([H:5])([H:6])=[C:2]=[O:3].[H:7][O:4][H:8]",
                         "[C:1]([H:5])([H:6])([H:7])[C:2](=[O:3])[O:4][H:8]"),
}

#: size -> (variants per reaction, NEB iterations at most, keep every k-th iteration)
SIZES = {"tiny": (1, 6, 2), "small": (1, 200, 15), "medium": (6, 300, 2)}
N_IMAGES = 10  # including the two endpoints, as Transition1x
NEB_FMAX = 0.1
CLIMB_AFTER_FMAX = 0.5
CHUNK_SIZE = 1

CARD = {
    "what": f"{len(REACTIONS)} small organic reactions (tautomerisations, isomerisations, "
            "eliminations, ring opening, Diels-Alder, retro-ene, hydration), each written as "
            "atom-mapped reactant/product SMILES in `openjmp.data.generate.transition1x`.",
    "how": "RDKit embedding of both endpoints (multi-fragment endpoints are placed by aligning "
           "each fragment onto the other endpoint, then pushed apart), GFN2 relaxation "
           "(fmax 0.05 eV/Å), Kabsch alignment, IDPP interpolation to "
           f"{N_IMAGES} images, NEB optimised with FIRE to fmax {CLIMB_AFTER_FMAX} eV/Å, then "
           f"climbing-image NEB until fmax {NEB_FMAX} eV/Å or the iteration cap. Frames: all images of the first iteration, "
           "then the intermediate images of every k-th iteration (Transition1x keeps every "
           "iteration); energies/forces are the true GFN2 ones (not NEB-projected). "
           "`transition_state` = highest-energy image of the last path. NEBs that hit the "
           "iteration cap are kept (their paths are still GFN2 frames between the two "
           "minima); the card's `converged_neb` counts the converged ones.",
    "calculator": "GFN2-xTB via tblite (accuracy 1.0, electronic temperature 300 K), neutral "
                  "closed shell.",
    "units": "Transition1x layout: `/data/<formula>/<rxnNNNN>/` with `atomic_numbers` (Na,), "
             "`positions` (Nc,Na,3) Å, `wB97x_6-31G(d).energy` (Nc,) eV (total), "
             "`wB97x_6-31G(d).forces` (Nc,Na,3) eV/Å, subgroups `reactant`, "
             "`transition_state`, `product` (leading dim 1, scalar `hash`). **The level is "
             "GFN2-xTB**: the real key names are kept so Transition1x readers work unchanged.",
    "splits": "By formula (seeded, ~70/15/15, at least one formula each): `/train`, `/val`, "
              "`/test` hold soft links to `/data/<formula>`.",
}


def plan(size: str, seed: int) -> list[dict[str, Any]]:
    variants, max_iter, stride = SIZES[size]
    names = sorted(REACTIONS)
    if size == "tiny":
        names = ["hcn-isomerisation", "keto-enol-acetaldehyde"]
    return [{"reaction": n, "variant": v, "max_iter": max_iter, "stride": stride}
            for n in names for v in range(variants)]


def _mapped_atoms(smiles: str, seed: int) -> tuple[Atoms, list[list[int]]]:
    """Embed an all-atom-mapped SMILES; atoms ordered by map number. Returns (atoms,
    fragments as lists of indices in that order)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    params = Chem.SmilesParserParams()
    params.removeHs = False
    mol = Chem.MolFromSmiles(smiles, params)
    if mol is None:
        raise SkipStructure(f"rdkit-embed: cannot parse {smiles!r}")
    maps = [a.GetAtomMapNum() for a in mol.GetAtoms()]
    if sorted(maps) != list(range(1, len(maps) + 1)):
        raise SkipStructure(f"rdkit-embed: {smiles!r} is not fully atom-mapped")
    emb = AllChem.ETKDGv3()
    emb.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, emb) != 0:
        emb.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, emb) != 0:
            raise SkipStructure(f"rdkit-embed: embedding failed for {smiles!r}")
    try:
        AllChem.UFFOptimizeMolecule(mol, maxIters=500)
    except Exception:  # noqa: BLE001 - optional pre-optimisation
        pass
    order = np.argsort(maps)
    pos = mol.GetConformer().GetPositions()[order]
    numbers = np.array([mol.GetAtomWithIdx(int(i)).GetAtomicNum() for i in order])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    frags = [sorted(int(inverse[i]) for i in f) for f in Chem.GetMolFrags(mol)]
    return Atoms(numbers=numbers, positions=pos), frags


def kabsch(mobile: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``mobile`` (n,3) rigidly moved to best match ``target`` (least squares)."""
    mc, tc = mobile.mean(0), target.mean(0)
    h = (mobile - mc).T @ (target - tc)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return (mobile - mc) @ rot.T + tc


def _place_fragments(atoms: Atoms, frags: list[list[int]], reference: np.ndarray) -> None:
    """Move each fragment of ``atoms`` onto the matching atoms of ``reference`` (other
    endpoint), then push fragments apart until no inter-fragment distance is below 1.8 Å."""
    if len(frags) < 2:
        return
    pos = atoms.positions
    for f in frags:
        if len(f) >= 3:
            pos[f] = kabsch(pos[f], reference[f])
        else:
            pos[f] = pos[f] - pos[f].mean(0) + reference[f].mean(0)
    centre = pos.mean(0)
    for _ in range(50):
        close = False
        for a in range(len(frags)):
            for b in range(a + 1, len(frags)):
                d = np.linalg.norm(pos[frags[a]][:, None] - pos[frags[b]][None], axis=-1)
                if d.min() < 1.8:
                    close = True
        if not close:
            break
        for f in frags:
            direction = pos[f].mean(0) - centre
            norm = np.linalg.norm(direction)
            pos[f] += 0.2 * (direction / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0]))
    atoms.positions = pos


def endpoints(reaction: str, seed: int) -> tuple[Atoms, Atoms]:
    """Relaxed, aligned reactant and product (same atom order)."""
    r_smi, p_smi = REACTIONS[reaction]
    reactant, r_frags = _mapped_atoms(r_smi, seed)
    product, p_frags = _mapped_atoms(p_smi, seed + 1)
    if not np.array_equal(reactant.numbers, product.numbers):
        raise SkipStructure(f"reaction: {reaction} reactant and product atoms differ")
    # single-fragment side first; a multi-fragment side is placed onto it
    if len(r_frags) > 1 and len(p_frags) == 1:
        _place_fragments(reactant, r_frags, product.positions)
    elif len(p_frags) > 1:
        product.positions = kabsch(product.positions, reactant.positions)
        _place_fragments(product, p_frags, reactant.positions)
    reactant, _ = relax(reactant, fmax=0.05, steps=300)
    product, _ = relax(product, fmax=0.05, steps=300)
    product.positions = kabsch(product.positions, reactant.positions)
    return reactant, product


def work(item: dict[str, Any], rng: np.random.Generator) -> Result:
    from ase.mep import NEB
    from ase.optimize import FIRE

    reactant, product = endpoints(item["reaction"], int(rng.integers(1, 2**31 - 1)))
    images = [reactant.copy() for _ in range(N_IMAGES - 1)] + [product.copy()]
    for image in images:
        image.calc = GFN2Calculator()
    neb = NEB(images, climb=False, method="improvedtangent")
    neb.interpolate(method="idpp")
    frames: list[tuple[np.ndarray, float, np.ndarray]] = []
    iteration = [0]
    skip_next = [False]

    def record():
        if skip_next[0]:  # a new optimiser first re-observes the path already recorded
            skip_next[0] = False
            return
        first = iteration[0] == 0
        if first or iteration[0] % item["stride"] == 0:
            chosen = images if first else images[1:-1]
            for im in chosen:
                frames.append((im.get_positions().copy(), float(im.get_potential_energy()),
                               im.get_forces().copy()))
        iteration[0] += 1

    # plain NEB first (to a loose fmax), then climbing image, as usual for CI-NEB
    neb.climb = False
    opt = FIRE(neb, logfile=None, maxstep=0.1)
    opt.attach(record, interval=1)
    opt.run(fmax=CLIMB_AFTER_FMAX, steps=item["max_iter"] // 3)
    neb.climb = True
    opt = FIRE(neb, logfile=None, maxstep=0.1)
    opt.attach(record, interval=1)
    skip_next[0] = True
    opt.run(fmax=NEB_FMAX, steps=max(1, item["max_iter"] - item["max_iter"] // 3))
    last = [(im.get_positions().copy(), float(im.get_potential_energy()),
             im.get_forces().copy()) for im in images]
    ts = max(range(1, N_IMAGES - 1), key=lambda k: last[k][1])
    if iteration[0] - 1 != 0 and (iteration[0] - 1) % item["stride"] != 0:
        frames.extend(last[1:-1])  # make sure the final path (with the TS) is in the frames
    return {
        "numbers": reactant.numbers.astype(np.int64),
        "positions": np.stack([f[0] for f in frames]),
        "energy": np.array([f[1] for f in frames]),
        "forces": np.stack([f[2] for f in frames]),
        "ts_positions": last[ts][0], "ts_energy": np.asarray(last[ts][1]),
        "ts_forces": last[ts][2],
        "product_index": np.asarray(N_IMAGES - 1),
        "iterations": np.asarray(iteration[0] - 1),
        "converged": np.asarray(bool(opt.converged() if hasattr(opt, "converged") else False)),
    }


def formula_of(numbers: np.ndarray) -> str:
    """Transition1x-style formula: C, H, N, O order (e.g. ``C2H4O``)."""
    out = ""
    for z, sym in ((6, "C"), (1, "H"), (7, "N"), (8, "O")):
        n = int(np.sum(numbers == z))
        if n:
            out += sym + (str(n) if n > 1 else "")
    return out


def write(kept: list[tuple[int, Result]], items: list[dict], out: Path, seed: int
          ) -> dict[str, Any]:
    reactions = []
    per_formula: dict[str, int] = {}
    for i, res in kept:
        formula = formula_of(res["numbers"])
        k = per_formula.get(formula, 0)
        per_formula[formula] = k + 1
        key = hashlib.md5(f"{items[i]['reaction']}/{items[i]['variant']}".encode()).hexdigest()
        p = int(res["product_index"])

        def one(pos, e, f, tag, key=key):
            return {"positions": pos[None], "energy": np.atleast_1d(e),
                    "forces": f[None], "hash": f"{key}-{tag}"}

        reactions.append({
            "formula": formula, "rxn": f"rxn{k:04d}", "atomic_numbers": res["numbers"],
            "positions": res["positions"], "energy": res["energy"], "forces": res["forces"],
            "reactant": one(res["positions"][0], res["energy"][0], res["forces"][0], "r"),
            "product": one(res["positions"][p], res["energy"][p], res["forces"][p], "p"),
            "transition_state": one(res["ts_positions"], float(res["ts_energy"]),
                                    res["ts_forces"], "ts"),
            "name": items[i]["reaction"],
        })
    formulas = sorted(per_formula)
    labels = split_names(len(formulas), (0.7, 0.15, 0.15), item_rng(seed, NAME + "/split", 0))
    split_of = {f: ("train", "val", "test")[int(s)] for f, s in zip(formulas, labels)}
    write_transition1x_h5(out / FILE, reactions, split_of, LEVEL)
    splits: dict[str, dict[str, int]] = {s: {"formulas": 0, "reactions": 0, "frames": 0}
                                         for s in ("train", "val", "test")}
    for f in formulas:
        splits[split_of[f]]["formulas"] += 1
    for r in reactions:
        s = splits[split_of[r["formula"]]]
        s["reactions"] += 1
        s["frames"] += len(r["energy"])
    return {"files": [FILE],
            "counts": {"reactions": len(reactions), "formulas": len(formulas),
                       "frames": sum(len(r["energy"]) for r in reactions),
                       "converged_neb": int(sum(bool(r["converged"]) for _, r in kept))},
            "splits": splits,
            "reaction_names": {f"{r['formula']}/{r['rxn']}": r["name"] for r in reactions}}
