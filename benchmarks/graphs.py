"""Graph construction time per structure: openjmp's radius_graph (vesin) vs ASE's neighbor_list.

Cases: (i) 20-atom molecule, cutoff 8 Å; (ii) 100-atom slab, cutoff 12 Å, max_neighbors 30;
(iii) 1000-atom bulk cell, cutoff 6 Å. Usage: python benchmarks/graphs.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, time_repeats, write_results  # noqa: E402


def structures():
    from ase.build import bulk, fcc111

    rng = np.random.default_rng(0)
    # (i) a 20-atom organic-like molecule: random positions with no close contacts
    pos = []
    while len(pos) < 20:
        p = rng.random(3) * 6.0
        if all(np.linalg.norm(p - q) > 1.0 for q in pos):
            pos.append(p)
    molecule = (np.array(pos), np.zeros((3, 3)), np.array([False] * 3))
    slab = fcc111("Pt", size=(5, 5, 4), vacuum=10.0)  # 100 atoms, periodic in x, y (OC20: all three)
    slab.pbc = True
    slab.rattle(0.05, seed=1)
    bulk_cell = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((5, 5, 10))  # 1000 atoms
    bulk_cell.rattle(0.05, seed=2)
    return [
        ("molecule_20", *molecule, 8.0, None),
        ("slab_100", slab.positions, np.asarray(slab.cell), slab.pbc, 12.0, 30),
        ("bulk_1000", bulk_cell.positions, np.asarray(bulk_cell.cell), bulk_cell.pbc, 6.0, None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    from openjmp.data.graphs import radius_graph

    repeats = 5 if args.quick else 20
    rows = []
    for name, pos, cell, pbc, cutoff, max_nb in structures():
        atoms = Atoms(numbers=[6] * len(pos), positions=pos, cell=cell, pbc=pbc)
        # default arguments bind this iteration's values (the lambdas run inside the loop anyway)
        ours = time_repeats(lambda p=pos, c=cell, b=pbc, r=cutoff, k=max_nb: radius_graph(p, c, b, r, k), repeats)
        ase_t = time_repeats(lambda a=atoms, r=cutoff: neighbor_list("ijS", a, r), repeats)
        edges = radius_graph(pos, cell, pbc, cutoff, max_nb).num_edges
        rows.append({
            "case": name, "atoms": len(pos), "cutoff": cutoff, "max_neighbors": max_nb, "edges": edges,
            "openjmp": ours, "ase_neighbor_list": ase_t,
            "speedup_vs_ase": ase_t["median_s"] / ours["median_s"],
        })
    print(f"{'case':<12} {'atoms':>6} {'edges':>8} {'openjmp ms':>11} {'ASE ms':>9} {'speed-up':>9}")
    for r in rows:
        print(
            f"{r['case']:<12} {r['atoms']:>6} {r['edges']:>8} {r['openjmp']['median_s'] * 1e3:>11.2f} "
            f"{r['ase_neighbor_list']['median_s'] * 1e3:>9.2f} {r['speedup_vs_ase']:>8.1f}x"
        )
    print("(openjmp includes sorting and the max_neighbors cut; ASE builds the plain list)")
    path = write_results("graphs", {"machine": machine_info(), "quick": args.quick, "cases": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
