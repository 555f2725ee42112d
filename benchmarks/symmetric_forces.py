"""Forces where symmetry says they vanish, side by side for several model files (issue 15).

    python benchmarks/symmetric_forces.py --model NAME=PATH [--model NAME=PATH ...] [--out FILE]

For every model (e.g. ``old=<openjmp-mini before the smooth basis> new=openjmp-mini``), float32,
gradient forces (−dE/dx, the calculator's default): on ideal ASE crystals the largest force
component and, for cubic cells, the largest off-diagonal stress; on ideal molecules the largest
symmetry-forbidden force component (benzene: in-plane tangential and out-of-plane; linear CO2 /
C2H2: perpendicular to the axis) and |total force|. Target (issue 15): ≤ 1e-3 eV/Å and
≤ 1e-4 eV/Å³. Prints a table and writes JSON (default benchmarks/results/symmetric_forces.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, graphene, molecule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

FORCE_TARGET = 1e-3  # eV/Å
STRESS_TARGET = 1e-4  # eV/Å³


def crystals() -> dict[str, tuple[Atoms, bool]]:
    """name -> (ideal crystal, cubic cell?)"""
    return {
        "fcc Cu 2x2x2": (bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2), True),
        "bcc Fe 2x2x2": (bulk("Fe", "bcc", a=2.87, cubic=True).repeat(2), True),
        "diamond Si": (bulk("Si", "diamond", a=5.43, cubic=True), True),
        "rocksalt NaCl": (bulk("NaCl", "rocksalt", a=5.64, cubic=True), True),
        "hcp Mg 2x2x2": (bulk("Mg", "hcp", a=3.21, c=5.21).repeat(2), False),
        "graphene 3x3": (graphene(vacuum=10.0).repeat((3, 3, 1)), False),
    }


def forbidden_components(name: str, atoms: Atoms, forces: np.ndarray) -> float:
    """Largest force component that the molecule's symmetry forbids (eV/Å)."""
    pos = atoms.positions - atoms.positions.mean(axis=0)
    if name == "benzene":  # planar D6h: no out-of-plane force, no tangential in-plane force
        normal = np.linalg.svd(pos)[2][-1]
        radial = pos - np.outer(pos @ normal, normal)
        radial /= np.linalg.norm(radial, axis=1, keepdims=True)
        tangential = np.cross(normal, radial)
        return float(max(np.abs(forces @ normal).max(), np.abs((forces * tangential).sum(1)).max()))
    axis = np.linalg.svd(pos)[2][0]  # linear molecules: nothing perpendicular to the axis
    return float(np.abs(forces - np.outer(forces @ axis, axis)).max())


def measure(path: str) -> dict:
    from openjmp.calculator import JMPCalculator

    calc = JMPCalculator(path, dtype="float32", forces="gradient", unknown_elements="ignore")
    rows = {}
    for name, (atoms, cubic) in crystals().items():
        atoms.calc = calc
        row = {"max_abs_force": float(np.abs(atoms.get_forces()).max())}
        if cubic:
            s = atoms.get_stress(voigt=False)
            row["max_offdiag_stress"] = float(np.abs(s - np.diag(np.diag(s))).max())
        rows[name] = row
    for name, formula in (("benzene", "C6H6"), ("CO2", "CO2"), ("C2H2", "C2H2")):
        atoms = molecule(formula)
        atoms.calc = calc
        f = atoms.get_forces()
        rows[name] = {"max_forbidden_force": forbidden_components(name, atoms, f),
                      "abs_total_force": float(np.abs(f.sum(axis=0)).max())}
    return rows


def worst(rows: dict) -> tuple[float, float]:
    forces = [v for r in rows.values() for k, v in r.items() if k != "max_offdiag_stress"]
    stress = [r["max_offdiag_stress"] for r in rows.values() if "max_offdiag_stress" in r]
    return max(forces), max(stress)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="NAME=PATH of a model file (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="JSON path")
    args = p.parse_args()
    results, t0 = {}, time.perf_counter()
    for spec in args.model:
        name, _, path = spec.partition("=")
        results[name] = {"path": Path(path).name, "structures": measure(path)}
    names = list(results)
    print(f"{'structure':16s} {'quantity':20s} " + " ".join(f"{n:>12s}" for n in names))
    first = results[names[0]]["structures"]
    for structure, row in first.items():
        for quantity in row:
            values = " ".join(f"{results[n]['structures'][structure][quantity]:12.2e}" for n in names)
            print(f"{structure:16s} {quantity:20s} {values}")
    for n in names:
        f, s = worst(results[n]["structures"])
        results[n]["worst_force"], results[n]["worst_offdiag_stress"] = f, s
        results[n]["within_target"] = f <= FORCE_TARGET and s <= STRESS_TARGET
        print(f"{n}: worst force {f:.2e} eV/Å (target {FORCE_TARGET:g}), worst off-diagonal stress "
              f"{s:.2e} eV/Å³ (target {STRESS_TARGET:g}) -> {'PASS' if results[n]['within_target'] else 'FAIL'}")
    payload = {"benchmark": "symmetric_forces", "dtype": "float32", "forces": "gradient",
               "targets": {"force_eV_per_A": FORCE_TARGET, "offdiag_stress_eV_per_A3": STRESS_TARGET},
               "models": results, "wall_s": time.perf_counter() - t0, "machine": machine_info()}
    print(f"wrote {write_results('symmetric_forces', payload, args.out)}")


if __name__ == "__main__":
    main()
