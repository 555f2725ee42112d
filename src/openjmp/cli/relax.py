"""openjmp relax: geometry (and optionally cell) relaxation with an openjmp model (ASE).

FIRE or BFGS on the forces of JMPCalculator until max |F| < ``--fmax`` eV/Å or ``--steps``.
``--cell`` also relaxes the cell of a fully periodic structure (``ase.filters.FrechetCellFilter``
on the stress). Writes the trajectory (``.traj`` or extxyz), the optimiser log and the final
structure (``--out``, extxyz with energy / forces / stress). Exit code 0 when converged, 1 if not.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from openjmp.cli.md import TrajectoryWriter, add_model_args, load_atoms_with_calculator


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--optimizer", choices=["FIRE", "BFGS"], default="FIRE")
    p.add_argument("--fmax", type=float, default=0.05, help="eV/Å")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--cell", action="store_true",
                   help="relax the cell too (fully periodic structures; FrechetCellFilter)")
    p.add_argument("--traj", type=Path, default=Path("relax.traj"), help=".traj or .extxyz")
    p.add_argument("--log", type=Path, default=Path("relax.log"))
    p.add_argument("--out", type=Path, default=Path("relaxed.extxyz"), help="final structure")
    p.set_defaults(func=run)


def run(args) -> int:
    import ase.io
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.optimize import BFGS, FIRE

    atoms = load_atoms_with_calculator(args)
    target = atoms
    if args.cell:
        if not atoms.pbc.all():
            raise SystemExit(f"--cell needs a fully periodic structure (pbc={atoms.pbc.tolist()})")
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(atoms)
    opt_cls = {"FIRE": FIRE, "BFGS": BFGS}[args.optimizer]
    args.log.parent.mkdir(parents=True, exist_ok=True)
    opt = opt_cls(target, logfile=str(args.log))
    writer = TrajectoryWriter(args.traj, atoms)
    opt.attach(writer, interval=1)
    e0 = atoms.get_potential_energy()
    from openjmp.progress import Progress

    # a live bar in a terminal, else a line at least every $OPENJMP_PROGRESS_INTERVAL s (30);
    # --steps is a limit, so the ETA is an upper bound; fields evaluated only when drawn
    bar = Progress("relax", total=args.steps, unit="step", eta_bound=True)

    def max_force() -> str:
        f = np.asarray(target.get_forces())
        return f"{float(np.sqrt((f ** 2).sum(axis=1).max())):.4f} eV/Å (target {args.fmax:g})"

    fields = {"fmax": max_force, "E": lambda: f"{atoms.get_potential_energy():.6f} eV"}
    opt.attach(lambda: bar.update(opt.nsteps, fields), interval=1)
    start = time.perf_counter()
    try:
        converged = bool(opt.run(fmax=args.fmax, steps=args.steps))
    finally:
        bar.close()
        writer.close()
    elapsed = time.perf_counter() - start
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    results["free_energy"] = results["energy"]
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    final = atoms.copy()
    final.calc = SinglePointCalculator(final, **results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(str(args.out), final, format="extxyz")
    fmax = float((results["forces"] ** 2).sum(axis=1).max() ** 0.5)
    print(f"{'converged' if converged else 'NOT converged'} after {opt.nsteps} steps "
          f"({elapsed:.1f} s): E {e0:.6f} -> {results['energy']:.6f} eV, max |F| {fmax:.4f} eV/Å; "
          f"final structure {args.out}, trajectory {args.traj}, log {args.log}")
    return 0 if converged else 1
