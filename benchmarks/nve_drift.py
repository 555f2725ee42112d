"""Energy conservation of NVE molecular dynamics with JMPCalculator (issue 15).

Velocity Verlet (ase.md.verlet.VelocityVerlet) from a Maxwell–Boltzmann distribution at 300 K
(seeded, total momentum removed), forces as −dE/dx of the energy head of the system's domain
(mini-oc20 for Cu, mini-ani1x for ethanol, when the file has them; else its default head)
(``--forces direct`` uses a pre-training head's direct-force MLP instead, which does not conserve
energy):

* ``cu108``: fcc Cu, 3×3×3 cubic cell (108 atoms, a = 3.61 Å, periodic), 1 fs × 1,000 steps;
* ``ethanol``: ase.build.molecule("CH3CH2OH") in vacuum, 0.5 fs × 1,000 steps.

Per system: drift = slope of the least-squares line of total energy per atom against time
(meV/atom/ps; target |drift| <= 0.5), the max − min spread of total energy per atom (meV/atom),
the mean temperature (K), wall time (s) and time per step (ms), and the energy traces (per atom,
eV). Writes ``benchmarks/results/nve_drift.json`` (machine info, settings, results) and a plot of
total, potential and kinetic energy per atom (relative to t = 0) against time, one panel per
system (``benchmarks/results/nve_drift.png``).

    python benchmarks/nve_drift.py [--steps 1000] [--model openjmp-mini|PATH]
                                   [--dtype float32|float64] [--systems cu108 ethanol]
                                   [--forces gradient|direct] [--out PATH.json]
                                   [--plot PATH.png] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_info, write_results  # noqa: E402

#: |drift| target of issue 15, meV/atom/ps
DRIFT_TARGET = 0.5
TEMPERATURE_K = 300.0


@dataclass(frozen=True)
class System:
    """An MD test system: a builder of its initial structure and the time step in fs."""

    description: str
    build: Callable
    timestep_fs: float
    #: the energy head whose domain the system belongs to, used when the model file has it
    #: (otherwise the file's default head)
    head: str | None = None


def fcc_copper_108():
    """fcc Cu, 3×3×3 cubic cell of a = 3.61 Å (108 atoms), periodic."""
    from ase.build import bulk

    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)


def ethanol():
    """Ethanol (ase.build.molecule), no cell, not periodic."""
    from ase.build import molecule

    return molecule("CH3CH2OH")


SYSTEMS = {
    "cu108": System("fcc Cu 3x3x3 cubic, 108 atoms, periodic", fcc_copper_108, 1.0, "mini-oc20"),
    "ethanol": System("ethanol CH3CH2OH in vacuum, 9 atoms", ethanol, 0.5, "mini-ani1x"),
}


def resolve_model(name_or_path: str) -> Path:
    """A model file path from a path or a registry name with weights (``openjmp-mini``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    from openjmp.models.registry import resolve_pretrained_file

    return resolve_pretrained_file(name_or_path)


def thermalise(atoms, temperature_k: float, seed: int) -> None:
    """Maxwell–Boltzmann velocities at ``temperature_k`` (K) from ``seed``, zero total momentum."""
    from ase.md.velocitydistribution import Stationary

    from openjmp.cli.md import _thermalize  # ASE-version-independent Maxwell–Boltzmann draw

    _thermalize(atoms, temperature_k, np.random.default_rng(seed))
    Stationary(atoms)


def run_nve(atoms, timestep_fs: float, steps: int) -> dict:
    """Velocity Verlet for ``steps`` steps of ``timestep_fs`` fs; per-atom energy traces (eV),
    time (ps), temperature (K) of every step including the start, and wall time (s)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    trace: dict[str, list[float]] = {"time_ps": [], "potential": [], "kinetic": [], "temperature_K": []}
    n = len(atoms)
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)

    def record() -> None:
        trace["time_ps"].append(dyn.nsteps * timestep_fs * 1e-3)
        trace["potential"].append(atoms.get_potential_energy() / n)
        trace["kinetic"].append(atoms.get_kinetic_energy() / n)
        trace["temperature_K"].append(atoms.get_temperature())

    dyn.attach(record, interval=1)
    start = time.perf_counter()
    dyn.run(steps)
    wall_s = time.perf_counter() - start
    trace["total"] = list(np.add(trace["potential"], trace["kinetic"]))
    return {"trace": trace, "wall_s": wall_s}


def drift_statistics(trace: dict) -> dict:
    """Drift (meV/atom/ps: least-squares slope of total energy per atom against time), max − min
    spread of total energy per atom (meV/atom) and mean temperature (K) of a trace."""
    t = np.asarray(trace["time_ps"])
    total = np.asarray(trace["total"])
    slope_ev_per_ps = np.polyfit(t, total, 1)[0] if len(t) > 1 else float("nan")
    return {
        "drift_meV_per_atom_per_ps": float(1e3 * slope_ev_per_ps),
        "total_energy_spread_meV_per_atom": float(1e3 * (total.max() - total.min())),
        "mean_temperature_K": float(np.mean(trace["temperature_K"])),
    }


def benchmark_system(name: str, model_path: Path, dtype: str, forces: str, steps: int,
                     seed: int) -> dict:
    """NVE run of system ``name`` with the model file (``forces``: gradient or direct);
    statistics, timings and traces."""
    from openjmp.calculator import JMPCalculator
    from openjmp.checkpoints.format import load_model_file

    system = SYSTEMS[name]
    atoms = system.build()
    head = system.head if system.head in load_model_file(model_path).heads else None
    atoms.calc = JMPCalculator(model_path, head=head, dtype=dtype, forces=forces,
                               unknown_elements="ignore")
    thermalise(atoms, TEMPERATURE_K, seed)
    run = run_nve(atoms, system.timestep_fs, steps)
    stats = drift_statistics(run["trace"])
    return {
        "description": system.description, "head": atoms.calc.head, "natoms": len(atoms),
        "timestep_fs": system.timestep_fs,
        "steps": steps, "duration_ps": steps * system.timestep_fs * 1e-3, **stats,
        "within_target": bool(abs(stats["drift_meV_per_atom_per_ps"]) <= DRIFT_TARGET),
        "wall_s": run["wall_s"], "ms_per_step": 1e3 * run["wall_s"] / max(steps, 1),
        "trace_per_atom_eV": run["trace"],
    }


def plot_energies(results: dict, path: Path) -> Path:
    """Total, potential and kinetic energy per atom minus their t = 0 values (meV/atom) against
    time (ps), one panel per system; saved as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        trace = r["trace_per_atom_eV"]
        for key in ("total", "potential", "kinetic"):
            values = 1e3 * (np.asarray(trace[key]) - trace[key][0])
            ax.plot(trace["time_ps"], values, label=key, lw=1.5 if key == "total" else 0.8)
        ax.set_title(f"{name}: drift {r['drift_meV_per_atom_per_ps']:+.3f} meV/atom/ps")
        ax.set_xlabel("time (ps)")
        ax.set_ylabel("E − E(0) (meV/atom)")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def print_table(results: dict) -> None:
    """One line per system: drift, spread, temperature, timings, target check."""
    print(f"\n{'system':10} {'atoms':>5} {'dt fs':>5} {'steps':>6} {'drift meV/atom/ps':>18} "
          f"{'spread meV/atom':>16} {'T mean K':>9} {'wall s':>8} {'ms/step':>8}  target")
    for name, r in results.items():
        verdict = "ok" if r["within_target"] else f"FAIL (|drift| > {DRIFT_TARGET})"
        print(f"{name:10} {r['natoms']:5d} {r['timestep_fs']:5.1f} {r['steps']:6d} "
              f"{r['drift_meV_per_atom_per_ps']:18.4f} {r['total_energy_spread_meV_per_atom']:16.4f} "
              f"{r['mean_temperature_K']:9.1f} {r['wall_s']:8.1f} {r['ms_per_step']:8.1f}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="MD steps per system")
    parser.add_argument("--model", default="openjmp-mini", help="registry name or model file path")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--forces", choices=("gradient", "direct"), default="gradient",
                        help="gradient: -dE/dx (conservative); direct: a pre-training head's force MLP")
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial velocities")
    parser.add_argument("--out", type=Path, default=RESULTS / "nve_drift.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "nve_drift.png")
    args = parser.parse_args(argv)

    model_path = resolve_model(args.model)
    results = {}
    for name in args.systems:
        results[name] = benchmark_system(name, model_path, args.dtype, args.forces, args.steps,
                                         args.seed)
        print(f"{name}: drift {results[name]['drift_meV_per_atom_per_ps']:+.4f} meV/atom/ps", flush=True)
    print_table(results)
    payload = {
        "machine": machine_info(),
        "config": {"model": args.model, "model_file": model_path.name, "dtype": args.dtype,
                   "integrator": "ase.md.verlet.VelocityVerlet", "initial_temperature_K": TEMPERATURE_K,
                   "seed": args.seed, "forces": args.forces,
                   "drift_target_meV_per_atom_per_ps": DRIFT_TARGET},
        "systems": results,
    }
    print(f"wrote {write_results('nve_drift', payload, args.out)}")
    print(f"wrote {plot_energies(results, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
