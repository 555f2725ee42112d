"""openjmp md: molecular dynamics with an openjmp model (ASE, JMPCalculator).

NVE (velocity Verlet) or NVT (Langevin) from one structure of any file ``ase.io`` reads.
Velocities start from a Maxwell-Boltzmann distribution at ``--temperature`` (unless the file has
momenta and ``--keep-velocities``). Writes a trajectory (``.traj`` ASE trajectory, else extxyz)
every ``--interval`` steps and an ASE MD log (time ps, Etot, Epot, Ekin eV, T K).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_model_args(p) -> None:
    """Options shared by ``md`` and ``relax``."""
    p.add_argument("structure", type=Path, help="structure file (anything ase.io reads)")
    p.add_argument("--model", "--checkpoint", dest="model", required=True, metavar="NAME|PATH",
                   help="registered model name (openjmp-mini; openjmp models list) or openjmp model file "
                        "(e.g. runs/finetune-mini/rmd17_ethanol/model.pt); --checkpoint is an alias")
    p.add_argument("--index", default="0", help="which frame of the file (ase index, default 0)")
    p.add_argument("--head", help="energy head name (default: fine-tuned energy head)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="compute precision (float64 for tight energy conservation)")
    p.add_argument("--forces", choices=["gradient", "direct"], default=None,
                   help="force mode: gradient (-dE/dx, conservative) or direct (the head's force MLP, not conservative); default: the head's trained convention (pre-training heads: direct), as the calculator")
    p.add_argument("--unknown-elements", choices=["warn", "error", "ignore"], default="warn",
                   help="elements the head was not trained on")


def load_atoms_with_calculator(args):
    import ase.io

    from openjmp.calculator import JMPCalculator
    from openjmp.cli.common import check_device
    from openjmp.models.registry import resolve_model

    check_device(args.device)
    args.model = resolve_model(args.model)  # a wrong name or path fails before the structure is read
    index = int(args.index) if args.index.lstrip("-").isdigit() else args.index
    atoms = ase.io.read(str(args.structure), index=index)
    atoms.calc = JMPCalculator(args.model, head=args.head, device=args.device,
                               dtype=args.dtype, unknown_elements=args.unknown_elements,
                               forces=getattr(args, "forces", None))
    return atoms


class TrajectoryWriter:
    """Observer writing frames to ``.traj`` (ase Trajectory) or extxyz (appending)."""

    def __init__(self, path: Path, atoms) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.atoms = atoms
        self.path = path
        self.traj = None
        if path.suffix == ".traj":
            from ase.io.trajectory import Trajectory

            self.traj = Trajectory(str(path), "w", atoms)
        else:
            path.write_text("")

    def __call__(self) -> None:
        if self.traj is not None:
            self.traj.write()
        else:
            import ase.io
            from ase.calculators.singlepoint import SinglePointCalculator

            frame = self.atoms.copy()
            results = {k: v for k, v in self.atoms.calc.results.items()
                       if k in ("energy", "free_energy", "forces", "stress")}
            frame.calc = SinglePointCalculator(frame, **results)
            ase.io.write(str(self.path), frame, format="extxyz", append=True)

    def close(self) -> None:
        if self.traj is not None:
            self.traj.close()


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--ensemble", choices=["nve", "langevin"], default="nve", help="NVE (velocity Verlet) or NVT (Langevin)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (start / thermostat)")
    p.add_argument("--timestep", type=float, default=0.5, help="fs")
    p.add_argument("--steps", type=int, default=1000, help="MD steps")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial velocities / thermostat")
    p.add_argument("--keep-velocities", action="store_true",
                   help="use the file's momenta instead of drawing new ones")
    p.add_argument("--traj", type=Path, default=Path("md.traj"), help=".traj or .extxyz")
    p.add_argument("--log", type=Path, default=Path("md.log"))
    p.add_argument("--interval", type=int, default=10, help="steps between frames / log lines")
    p.set_defaults(func=run)


def _thermalize(atoms, temperature_K: float, rng) -> None:
    """Maxwell-Boltzmann momenta (``thermalize_momenta`` on ASE >= 3.29)."""
    import ase.md.velocitydistribution as vd

    if hasattr(vd, "thermalize_momenta"):
        vd.thermalize_momenta(atoms, temperature_K, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


def run(args) -> int:
    import numpy as np
    from ase import units
    from ase.md import MDLogger
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary
    from ase.md.verlet import VelocityVerlet

    atoms = load_atoms_with_calculator(args)
    if args.ensemble == "nve" and atoms.calc.predictor.forces == "direct":
        import warnings

        warnings.warn("NVE with direct forces (the head's force MLP, its trained convention): they "
                      "are not -dE/dx, so the total energy drifts; --forces gradient conserves it "
                      "(docs/forces.md)", stacklevel=1)
    if not (args.keep_velocities and atoms.has("momenta")):
        _thermalize(atoms, args.temperature, np.random.default_rng(args.seed))
        Stationary(atoms)
    dt = args.timestep * units.fs
    if args.ensemble == "nve":
        dyn = VelocityVerlet(atoms, timestep=dt)
    else:
        # centre-of-mass drift is removed by a FixCom constraint (ASE >= 3.28 recommendation)
        from ase.constraints import FixCom

        atoms.set_constraint([*atoms.constraints, FixCom()])
        dyn = Langevin(atoms, timestep=dt, temperature_K=args.temperature,
                       friction=args.friction / units.fs, rng=np.random.default_rng(args.seed),
                       fixcm=False)
    writer = TrajectoryWriter(args.traj, atoms)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    logger = MDLogger(dyn, atoms, str(args.log), header=True, stress=False, peratom=False,
                      mode="w")
    dyn.attach(writer, interval=args.interval)
    dyn.attach(logger, interval=args.interval)
    e0 = atoms.get_total_energy()
    from openjmp.progress import Progress

    # a live bar in a terminal, else a line at least every $OPENJMP_PROGRESS_INTERVAL s (30);
    # the fields are evaluated only when a line is drawn
    bar = Progress("md", total=args.steps, unit="step")
    fields = {"T": lambda: f"{atoms.get_temperature():.1f} K",
              "Etot": lambda: f"{atoms.get_total_energy():.6f} eV"}
    first = dyn.nsteps
    dyn.attach(lambda: bar.update(dyn.nsteps - first, fields), interval=1)
    start = time.perf_counter()
    try:
        dyn.run(args.steps)
    finally:
        bar.close()
        writer.close()
        logger.close() if hasattr(logger, "close") else None
    elapsed = time.perf_counter() - start
    e1 = atoms.get_total_energy()
    print(f"{args.steps} steps of {args.ensemble} in {elapsed:.1f} s "
          f"({args.steps / max(elapsed, 1e-9):.2f} steps/s); E_tot {e0:.6f} -> {e1:.6f} eV; "
          f"T {atoms.get_temperature():.1f} K; trajectory {args.traj}, log {args.log}")
    return 0
