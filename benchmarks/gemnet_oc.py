"""GemNet-OC (JMP-S hyperparameters) speed on CPU, float32.

Cases: the standard batch ``shared/bench/batch8.extxyz`` (8 structures, 391 atoms; graphs with
cutoff 12 Å and max neighbours main 30 / a2ee2a 20 / qint 8 / a2a 1000, quadruplets for every
atom (all tags 2 -> in qint_tags), as ``shared/bench/README.md``):

* ``train``: energy + direct forces (pre-training head), loss, backward, AdamW step;
* ``infer_direct``: energy + direct forces, no grad;
* ``infer_grad``: energy + gradient forces (-dE/dpos, autograd);
* ``infer_direct_bf16``: ``infer_direct`` under ``torch.autocast("cpu", torch.bfloat16)``
  (optional fast path; its deviation from float32 is recorded in the JSON);

at 1 and 2 threads; plus inference (energy + direct forces) on rattled fcc Cu bulk cells of
~100 / 1,000 / 5,000 atoms (same graph settings) to show how the cost grows. Reports seconds per
batch (median, min, max over the repeats after one warm-up), structures/s, atoms/s, FLOPs per
call (``torch.utils.flop_counter.FlopCounterMode``), achieved GFLOP/s and its fraction of the
fp32 matmul peak measured in the same run (best of 2048^3 and 11730x512x512 ``torch.mm``), and
the process peak RSS after each case. Writes ``benchmarks/results/gemnet_oc.json``.

Usage: python benchmarks/gemnet_oc.py [--quick] [--threads 1 2] [--repeats N] [--sizes ...]
``--quick``: 1 thread, 1 repeat, batch8 cases + the 100-atom cell only. The glibc allocator is
tuned (``openjmp.models.cpu_malloc``) unless ``--no-malloc-tuning``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, time_repeats, write_results  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_peak_gflops(repeats: int = 3) -> dict:
    """Best fp32 GFLOP/s of torch.mm on two shapes at the current thread count."""
    best = {}
    for m, k, n in [(2048, 2048, 2048), (11730, 512, 512)]:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
        best[f"{m}x{k}x{n}"] = 2.0 * m * k * n / min(times) / 1e9
    return {"shapes_gflops": best, "peak_gflops": max(best.values())}


def load_batch8():
    from ase.io import read

    from openjmp.data.collate import collate
    from openjmp.data.record import AtomsRecord

    atoms = read(SHARED / "bench" / "batch8.extxyz", ":")
    records = [AtomsRecord.from_atoms(a) for a in atoms]
    for r in records:  # the benchmark uses quadruplets for every atom
        r.tags = np.full(r.natoms, 2, dtype=np.int64)
    return collate(records, torch.float32)


def bulk_batch(target_atoms: int):
    from ase.build import bulk

    from openjmp.data.collate import collate
    from openjmp.data.record import AtomsRecord

    n = max(1, round((target_atoms / 4) ** (1 / 3)))
    reps = [n, n, max(1, round(target_atoms / (4 * n * n)))]
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(reps)
    atoms.rattle(0.05, seed=0)
    rec = AtomsRecord.from_atoms(atoms)
    rec.tags = np.full(rec.natoms, 2, dtype=np.int64)
    return collate([rec], torch.float32)


def graphs_for(batch):
    from openjmp.data.graphs.goc import GOCGraphSettings, goc_graphs_for_batch

    return goc_graphs_for_batch(batch, GOCGraphSettings.from_constant(12.0, 30))


def make_model():
    from openjmp.models.gemnet_oc.config import load_preset
    from openjmp.models.jmp_model import JMPModel

    torch.manual_seed(0)
    return JMPModel(load_preset("jmp_s"), num_pretrain_tasks=1).float()


def case_functions(model, batch, graphs):
    from openjmp.models.heads import direct_forces, energy_from_atoms

    head_e, head_f = model.output.out_energy[0], model.output.out_forces[0]
    nb, na = batch.num_structures, batch.num_atoms
    energy_ref = torch.nan_to_num(batch.energy)
    forces_ref = torch.nan_to_num(batch.forces)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def energy_forces():
        out = model(batch.atomic_numbers, batch.pos, batch.cell, batch.batch, graphs, nb)
        e, _ = energy_from_atoms(head_e, out.x_E, batch.batch, nb)
        f = direct_forces(head_f, out.x_F, out.V_st, out.idx_t, na)
        return e, f

    def train():
        model.train()
        opt.zero_grad(set_to_none=True)
        e, f = energy_forces()
        loss = (e - energy_ref).abs().mean() + torch.linalg.vector_norm(f - forces_ref,
                                                                        dim=-1).mean()
        loss.backward()
        opt.step()
        model.eval()

    def infer_direct():
        with torch.no_grad():
            energy_forces()

    def infer_grad():
        # parameters frozen: only -dE/dpos is computed (backward() rather than autograd.grad
        # because FlopCounterMode does not support autograd.grad on a leaf)
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            pos = batch.pos.detach().requires_grad_(True)
            out = model(batch.atomic_numbers, pos, batch.cell, batch.batch, graphs, nb)
            e, _ = energy_from_atoms(head_e, out.x_E, batch.batch, nb)
            e.sum().backward()
            (-pos.grad).detach()
        finally:
            for p in params:
                p.requires_grad_(True)

    def infer_direct_bf16():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            energy_forces()

    return {"train": train, "infer_direct": infer_direct, "infer_grad": infer_grad,
            "infer_direct_bf16": infer_direct_bf16}


def bf16_deviation(model, batch, graphs) -> dict:
    """max|bf16 - fp32| / max|fp32| of the backbone outputs (random weights: indicative only)."""
    nb = batch.num_structures
    with torch.no_grad():
        ref = model(batch.atomic_numbers, batch.pos, batch.cell, batch.batch, graphs, nb)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(batch.atomic_numbers, batch.pos, batch.cell, batch.batch, graphs, nb)
    return {k: float((getattr(low, k).float() - getattr(ref, k)).abs().max()
                     / getattr(ref, k).abs().max()) for k in ("x_E", "x_F")}


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def run_case(name, fn, batch, repeats, peak, flops_cache):
    if name not in flops_cache:
        flops_cache[name] = count_flops(fn)
    timing = time_repeats(fn, repeats=repeats, warmup=1)
    med = timing["median_s"]
    flops = flops_cache[name]
    gflops = flops / med / 1e9
    return {
        **timing,
        "structures_per_s": batch.num_structures / med,
        "atoms_per_s": batch.num_atoms / med,
        "flops": flops,
        "gflops_per_s": gflops,
        "fraction_of_matmul_peak": gflops / peak,
        "peak_rss_mib_so_far": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--sizes", type=int, nargs="*", default=None,
                        help="bulk cell sizes (atoms) for the scaling cases")
    parser.add_argument("--cases", nargs="*",
                        default=["train", "infer_direct", "infer_grad", "infer_direct_bf16"])
    parser.add_argument("--no-malloc-tuning", action="store_true",
                        help="keep glibc's default mmap threshold (see openjmp.models.cpu_malloc)")
    args = parser.parse_args()
    malloc_tuned = False
    if not args.no_malloc_tuning:
        from openjmp.models.cpu_malloc import tune_cpu_allocator

        malloc_tuned = tune_cpu_allocator()
    threads = args.threads or ([1] if args.quick else [1, 2])
    repeats = args.repeats or (1 if args.quick else 5)
    sizes = args.sizes if args.sizes is not None else ([100] if args.quick else [100, 1000, 5000])

    model = make_model()
    batch = load_batch8()
    t0 = time.perf_counter()
    graphs = graphs_for(batch)
    graph_s = time.perf_counter() - t0
    rows = []
    results = {"machine": machine_info(), "config": {
        "model": "JMP-S (src/openjmp/configs/models/jmp_s.yaml)", "dtype": "float32",
        "graphs": "cutoff 12 A; max neighbours main 30, a2ee2a 20, qint 8, a2a 1000; all tags 2",
        "batch": "shared/bench/batch8.extxyz", "repeats": repeats, "warmup": 1,
        "malloc_tuned": malloc_tuned,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "batch8_edges": {"main": graphs.main.num_edges, "a2a": graphs.a2a.num_edges,
                         "a2ee2a": graphs.a2ee2a.num_edges, "qint": graphs.qint.num_edges},
        "batch8_graph_construction_s": graph_s}, "threads": {}}
    flops_cache: dict[str, float] = {}
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        peak = matmul_peak_gflops()
        entry = {"matmul_peak": peak, "cases": {}}
        fns = case_functions(model, batch, graphs)
        for name in args.cases:
            r = run_case(name, fns[name], batch, repeats, peak["peak_gflops"], flops_cache)
            entry["cases"][f"batch8/{name}"] = r
            rows.append((n_threads, f"batch8/{name}", r))
            print(f"[{n_threads} thr] batch8/{name}: {r['median_s']:.2f} s", flush=True)
        for size in sizes:
            bb = bulk_batch(size)
            gb = graphs_for(bb)
            fn = case_functions(model, bb, gb)["infer_direct"]
            key = f"bulk{bb.num_atoms}/infer_direct"
            r = run_case(key, fn, bb, repeats, peak["peak_gflops"], flops_cache)
            r["edges_main"] = gb.main.num_edges
            entry["cases"][key] = r
            rows.append((n_threads, key, r))
            print(f"[{n_threads} thr] {key}: {r['median_s']:.2f} s", flush=True)
        results["threads"][str(n_threads)] = entry
    if "infer_direct_bf16" in args.cases:
        results["bf16_relative_deviation_batch8"] = bf16_deviation(model, batch, graphs)

    print(f"\n{'thr':>3} {'case':28} {'median s':>9} {'min':>7} {'max':>7} {'struct/s':>9} "
          f"{'atoms/s':>8} {'GFLOP':>8} {'GFLOP/s':>8} {'%peak':>6} {'RSS MiB':>8}")
    for n_threads, key, r in rows:
        print(f"{n_threads:>3} {key:28} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f} "
              f"{r['structures_per_s']:9.2f} {r['atoms_per_s']:8.1f} {r['flops'] / 1e9:8.1f} "
              f"{r['gflops_per_s']:8.1f} {100 * r['fraction_of_matmul_peak']:6.1f} "
              f"{r['peak_rss_mib_so_far']:8.0f}")
    for n_threads in threads:
        p = results["threads"][str(n_threads)]["matmul_peak"]
        print(f"matmul peak ({n_threads} thr): {p['peak_gflops']:.1f} GFLOP/s {p['shapes_gflops']}")
    path = write_results("gemnet_oc", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
