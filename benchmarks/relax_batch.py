"""Structures relaxed per minute: an ASE FIRE loop (JMPCalculator) vs one batched TorchSim FIRE
(openjmp.sim.torchsim.OpenJMPModel + torch_sim's in-flight autobatcher).

    python benchmarks/relax_batch.py --n 32 --fmax 0.02 [--device cuda] [--dtype float32]

Structures: rattled 2-atom fcc / B2 crystals (tests/sim/conftest.py ``small_crystals``), each
optionally repeated (``--repeat 2`` = 16 atoms). Writes benchmarks/results/relax_batch.json
(``--out``); ``--append`` adds a run to the file's ``runs`` list.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from _common import RESULTS, machine_info, write_results  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="openjmp-mini")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--fmax", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--max-memory-scaler", type=float, default=None,
                    help="torch_sim autobatcher limit (atoms x density); default: measured on a GPU, 170,000 on a CPU")
    ap.add_argument("--no-uncap", action="store_true",
                    help="keep the head's graph settings (default: tests' uncap(), see tests/sim/conftest.py)")
    ap.add_argument("--out", type=Path, default=RESULTS / "relax_batch.json")
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    import numpy as np
    import torch
    import torch_sim as ts
    from ase.optimize import FIRE
    from sim.conftest import small_crystals, uncap

    from openjmp import JMPCalculator
    from openjmp.sim.torchsim import OpenJMPModel, autobatcher, resolve_model_path

    path = resolve_model_path(args.model)
    dtype = getattr(torch, args.dtype)
    calc = JMPCalculator(path, device=args.device, dtype=args.dtype, unknown_elements="ignore",
                         forces="gradient")  # the same -dE/dx as TorchSim
    model = OpenJMPModel(path, device=args.device, dtype=dtype, unknown_elements="ignore")
    if not args.no_uncap:
        uncap(calc.predictor)
        uncap(model.predictor)
    atoms = [a.repeat((args.repeat, 1, 1)) if args.repeat > 1 else a for a in small_crystals(args.n, seed=3)]
    natoms = sum(len(a) for a in atoms)

    t0 = time.perf_counter()
    ase_steps, ase_conv = 0, 0
    for a in atoms:
        y = a.copy()
        y.calc = calc
        opt = FIRE(y, logfile=None)
        ase_conv += bool(opt.run(fmax=args.fmax, steps=args.steps))
        ase_steps += opt.nsteps
    ase_s = time.perf_counter() - t0

    state = ts.io.atoms_to_state(atoms, device=model.device, dtype=dtype)
    conv = ts.generate_force_convergence_fn(force_tol=args.fmax, include_cell_forces=False)
    batcher = autobatcher(model, max_memory_scaler=args.max_memory_scaler)
    t0 = time.perf_counter()
    final = ts.optimize(system=state, model=model, optimizer=ts.optimizers.fire, convergence_fn=conv,
                        autobatcher=batcher, max_steps=args.steps, steps_between_swaps=5)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    ts_s = time.perf_counter() - t0
    out = model(final)
    f = out["forces"].detach().cpu().numpy()
    idx = final.system_idx.cpu().numpy()
    ts_conv = int(sum(np.linalg.norm(f[idx == b], axis=1).max() < args.fmax for b in range(len(atoms))))

    run = {
        "model": str(args.model), "structures": len(atoms), "atoms_total": natoms,
        "atoms_per_structure": natoms / len(atoms), "fmax": args.fmax, "max_steps": args.steps,
        "device": args.device, "dtype": args.dtype, "uncapped_graphs": not args.no_uncap,
        "ase": {"seconds": ase_s, "structures_per_minute": 60 * len(atoms) / ase_s,
                "force_calls": ase_steps + len(atoms), "converged": ase_conv},
        "torchsim": {"seconds": ts_s, "structures_per_minute": 60 * len(atoms) / ts_s,
                     "batched_force_calls": model.calls - 1, "converged": ts_conv,
                     "max_memory_scaler": batcher.max_memory_scaler},
        "speedup": ase_s / ts_s, "machine": machine_info(),
        "torch_sim": __import__("importlib.metadata").metadata.version("torch-sim-atomistic"),
    }
    if model.device.type == "cuda":
        run["machine"]["gpu"] = torch.cuda.get_device_name()
    payload = {"runs": [run]}
    if args.append and args.out.exists():
        payload["runs"] = json.loads(args.out.read_text()).get("runs", []) + [run]
    write_results("relax_batch", payload, args.out)
    print(json.dumps({k: run[k] for k in ("structures", "ase", "torchsim", "speedup")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
