"""MD throughput of JMPCalculator: steps/s and atoms·steps/s, eager vs torch.compile.

Systems: fcc Cu bulk (rattled, periodic) of 20, 108 and 1000 atoms. Models: ``openjmp-mini``
(the preset of the day; 3 blocks, 64 features since 6c59edd) and the JMP-S architecture
(4 blocks, 256/512), both with random
weights and a fine-tuning energy head (gradient forces: one forward + one backward per step),
JMP's graph settings (cutoff 12 Å, max_neighbors 30; a2a cap 1000). One MD step = one velocity
Verlet step (0.5 fs) through ASE = graph rebuild + forward + backward. Each repeat runs
``--steps`` steps; >= 5 repeats after one warm-up repeat (compiled: the warm-up includes the
compilation, reported separately as ``compile_s``).

    python benchmarks/inference.py [--quick] [--models mini,jmp-s] [--sizes 20,108,1000]
                                   [--compile] [--threads 1]

``--quick``: 2 steps per repeat (1 for JMP-S at 1000 atoms) and 5 repeats. ``--compile`` adds
compiled runs (slow to compile: minutes per model and size on 1 thread).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, time_repeats, write_results  # noqa: E402

GRAPH = {"cutoff": 12.0, "max_neighbors": 30, "pbc": None}
MODELS = {"mini": "openjmp-mini", "jmp-s": "jmp-s"}
PARAMETERS: dict[str, int] = {}


def make_model_file(preset: str, folder: Path) -> Path:
    import torch

    from openjmp.models.registry import create_model, save_model_file

    torch.manual_seed(0)
    model = create_model(preset, num_pretrain_tasks=0, finetune_energy=True,
                         regress_forces=False, direct_forces=False)
    PARAMETERS[preset] = sum(p.numel() for p in model.parameters())
    path = folder / f"{preset}.pt"
    save_model_file(model, path, normalization={"energy": {
        "linear_reference": [0.0] * 120, "energy_mean": 0.0, "energy_std": 1.0, "force_std": 1.0}},
        heads={"energy": {"kind": "energy_forces", "energy_module": "out_energy",
                          "force_module": None, "forces": "gradient", "reduction": "sum",
                          "graph": GRAPH, "elements": [29]}})
    return path


def make_system(natoms: int):
    from ase.build import bulk

    reps = {20: (5, 1, 1), 108: (3, 3, 3), 1000: (5, 5, 10)}[natoms]
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(reps)
    atoms.rattle(0.05, seed=0)
    return atoms


def bench_case(path: Path, natoms: int, steps: int, repeats: int, compile: bool) -> dict:
    import numpy as np
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from openjmp.calculator import JMPCalculator
    from openjmp.data.record import AtomsRecord

    atoms = make_system(natoms)
    calc = JMPCalculator(path, dtype="float32", compile=compile)
    atoms.calc = calc
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    t0 = time.perf_counter()
    dyn.run(1)  # first force call (+ compilation)
    first_s = time.perf_counter() - t0
    timing = time_repeats(lambda: dyn.run(steps), repeats=repeats, warmup=1)
    record = AtomsRecord.from_atoms(atoms)
    graph = time_repeats(lambda: calc.predictor.build_graphs([record]), repeats=3, warmup=0)
    g = calc.predictor.build_graphs([record])
    per_step = timing["median_s"] / steps
    return {
        "natoms": len(atoms), "compiled": compile, "steps_per_repeat": steps,
        "first_call_s": first_s, **{k: v / steps if k.endswith("_s") else v for k, v in timing.items()},
        "steps_per_s": 1.0 / per_step, "atom_steps_per_s": len(atoms) / per_step,
        "graph_build_s": graph["median_s"], "edges_main": g.main.num_edges,
        "edges_a2a": g.a2a.num_edges,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", default="mini,jmp-s")
    parser.add_argument("--sizes", default="20,108,1000")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--compile-sizes", default=None,
                        help="sizes for compiled runs (default: --sizes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", default="inference")
    parser.add_argument("--append", action="store_true",
                        help="merge into an existing results file (same model/size/mode replaced)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    compile_sizes = [int(s) for s in (args.compile_sizes or args.sizes).split(",")]
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models.split(","):
            path = make_model_file(MODELS[key], Path(tmp))
            for natoms in sizes:
                steps = args.steps or (2 if args.quick else 5)
                if key == "jmp-s" and natoms >= 1000:
                    steps = 1
                for compiled in ([False, True] if args.compile and natoms in compile_sizes
                                 else [False]):
                    result = bench_case(path, natoms, steps, args.repeats, compiled)
                    result["model"] = key
                    result["parameters"] = PARAMETERS[MODELS[key]]
                    cases.append(result)
                    print(f"{key:6s} {result['natoms']:5d} atoms  "
                          f"{'compiled' if compiled else 'eager   '}  "
                          f"{result['steps_per_s']:8.3f} steps/s  "
                          f"{result['atom_steps_per_s']:10.1f} atom·steps/s  "
                          f"(step median {result['median_s']:.4f} s, min {result['min_s']:.4f}, "
                          f"max {result['max_s']:.4f}; graph {result['graph_build_s']:.4f} s; "
                          f"first call {result['first_call_s']:.1f} s)", flush=True)
    old_cases = []
    previous = Path(__file__).resolve().parent / "results" / f"{args.out}.json"
    if args.append and previous.is_file():
        import json

        new_keys = {(c["model"], c["natoms"], c["compiled"]) for c in cases}
        old_cases = [c for c in json.loads(previous.read_text())["cases"]
                     if (c["model"], c["natoms"], c["compiled"]) not in new_keys]
    cases = sorted(old_cases + cases, key=lambda c: (c["model"], c["natoms"], c["compiled"]))
    payload = {
        "benchmark": "inference", "machine": machine_info(),
        "config": {"graph": GRAPH, "dtype": "float32", "forces": "gradient",
                   "system": "fcc Cu bulk a=3.61 rattled 0.05 Å, periodic",
                   "integrator": "ASE VelocityVerlet 0.5 fs", "threads": args.threads,
                   "quick": args.quick, "repeats": "per case (repeats field)",
                   "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "cases": cases,
    }
    print(f"-> {write_results(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
