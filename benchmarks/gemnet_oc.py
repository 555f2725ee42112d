"""GemNet-OC (JMP-S hyperparameters) speed on CPU, float32.

Cases: the standard batch ``shared/bench/batch8.extxyz`` (8 structures, 391 atoms; graphs with
cutoff 12 Å and max neighbours main 30 / a2ee2a 20 / qint 8 / a2a 1000, quadruplets for every
atom (all tags 2 -> in qint_tags), as ``shared/bench/README.md``):

* ``train``: energy + direct forces (pre-training head), loss, backward, AdamW step;
* ``infer_direct``: energy + direct forces, no grad;
* ``infer_grad``: energy + gradient forces (-dE/dpos, autograd);
* ``infer_direct_bf16``: ``infer_direct`` under ``torch.autocast("cpu", torch.bfloat16)``
  (optional fast path; its deviation from float32 is recorded in the JSON);
* ``train_bf16``: ``train`` with the forward pass under bf16 autocast (weights, gradients and
  AdamW stay float32);

at 1 and 2 threads; plus inference (energy + direct forces) on rattled fcc Cu bulk cells of
~100 / 1,000 / 5,000 atoms (same graph settings) to show how the cost grows. Reports seconds per
batch (median, min, max over the repeats after two warm-up calls), structures/s, atoms/s, FLOPs per
call (``torch.utils.flop_counter.FlopCounterMode``), achieved GFLOP/s and its fraction of the
fp32 matmul peak measured in the same run (best of 2048^3 and 11730x512x512 products with MKL
``torch.mm`` and with oneDNN, the library the model's linears use; measured before and after
the cases of each thread count, best kept), the
peak RSS of each case (Linux: VmHWM reset before the case; elsewhere the process maximum so
far), and, for the batch8 cases, the speed-up over the original implementation's times quoted in
``shared/bench/README.md``. Writes ``benchmarks/results/gemnet_oc.json``.

Usage: python benchmarks/gemnet_oc.py [--quick] [--threads 1 2] [--repeats N] [--sizes ...]
       [--cases ...] [--structures 0 4] [--profile] [--out PATH]
``--quick``: 1 thread, 1 repeat, cases train / infer_direct / infer_grad / infer_direct_bf16 on
batch8 + the 100-atom cell (~5 min on a quiet core). ``--structures``: use only these structures
of batch8 (for fast experiments; the original's reference times then do not apply).
``--profile``: after timing, profile each batch8 case once (torch.profiler, self CPU time) and
store the top operators in the JSON. The glibc allocator is tuned (``openjmp.models.cpu_malloc``)
unless ``--no-malloc-tuning``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, time_repeats, write_results  # noqa: E402

#: beside the checkout unless OPENJMP_SHARED names another place
SHARED = Path(os.environ.get("OPENJMP_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")


# the original (torch_scatter-based) implementation on this batch, 1 thread unless noted
# (shared/bench/README.md): seconds per batch
ORIGINAL_SECONDS = {("train", 1): 34.3, ("infer_direct", 1): 10.6, ("infer_direct", 2): 5.8}
ORIGINAL_TRAIN_FLOPS = 2.21e12
WARMUP = 2


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _proc_status_mib(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux) in MiB, else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def current_rss_mib() -> float | None:
    return _proc_status_mib("VmRSS")


def peak_rss_mib() -> float:
    """VmHWM (peak RSS since the last reset) where available, else ru_maxrss."""
    peak = _proc_status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_peak_gflops(repeats: int = 5) -> dict:
    """Best fp32 GFLOP/s of a plain matmul on two shapes at the current thread count, over the
    two CPU GEMM back-ends torch has: MKL (``torch.mm``) and oneDNN
    (``torch.ops.mkldnn._linear_pointwise``, which the model's float32 linears use; see
    ``openjmp.models.gemnet_oc.linear``). The peak is the best of all, so the model is never
    compared with the slower library."""
    from openjmp.models.gemnet_oc import linear as fast

    backends = {"mkl": lambda a, bt: torch.mm(a, bt.t())}
    if fast._available():
        backends["onednn"] = lambda a, bt: fast._dnn(a, bt)
    best = {}
    for m, k, n in [(2048, 2048, 2048), (11730, 512, 512)]:
        a, bt = torch.randn(m, k), torch.randn(n, k)
        for name, mm in backends.items():
            mm(a, bt)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                mm(a, bt)
                times.append(time.perf_counter() - t0)
            best[f"{name} {m}x{k}x{n}"] = 2.0 * m * k * n / min(times) / 1e9
    mkl = max(v for k, v in best.items() if k.startswith("mkl"))
    return {"shapes_gflops": best, "peak_gflops": max(best.values()), "mkl_peak_gflops": mkl}


def merge_peaks(a: dict, b: dict) -> dict:
    """Per-shape maximum of two :func:`matmul_peak_gflops` results."""
    shapes = {k: max(a["shapes_gflops"].get(k, 0.0), v) for k, v in b["shapes_gflops"].items()}
    mkl = max(v for k, v in shapes.items() if k.startswith("mkl"))
    return {"shapes_gflops": shapes, "peak_gflops": max(shapes.values()), "mkl_peak_gflops": mkl,
            "measured": "best of before and after the cases"}


def load_batch8(structures: list[int] | None = None):
    from ase.io import read

    from openjmp.data.collate import collate
    from openjmp.data.record import AtomsRecord

    atoms = read(SHARED / "bench" / "batch8.extxyz", ":")
    if structures is not None:
        atoms = [atoms[i] for i in structures]
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
    device_type = batch.pos.device.type  # autocast device ("cpu" here, "cuda" in gemnet_oc_gpu)

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
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16):
            energy_forces()

    def train_bf16():
        model.train()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=torch.bfloat16):
            e, f = energy_forces()
        e, f = e.float(), f.float()
        loss = (e - energy_ref).abs().mean() + torch.linalg.vector_norm(f - forces_ref,
                                                                        dim=-1).mean()
        loss.backward()
        opt.step()
        model.eval()

    return {"train": train, "infer_direct": infer_direct, "infer_grad": infer_grad,
            "infer_direct_bf16": infer_direct_bf16, "train_bf16": train_bf16}


def bf16_deviation(model, batch, graphs) -> dict:
    """max|bf16 - fp32| / max|fp32| of the backbone outputs (random weights: indicative only)."""
    nb = batch.num_structures
    with torch.no_grad():
        ref = model(batch.atomic_numbers, batch.pos, batch.cell, batch.batch, graphs, nb)
        with torch.autocast(batch.pos.device.type, dtype=torch.bfloat16):
            low = model(batch.atomic_numbers, batch.pos, batch.cell, batch.batch, graphs, nb)
    return {k: float((getattr(low, k).float() - getattr(ref, k)).abs().max()
                     / getattr(ref, k).abs().max()) for k in ("x_E", "x_F")}


def count_flops(fn) -> float:
    """FLOPs of one call. FlopCounterMode has no formula for oneDNN's
    ``mkldnn::_linear_pointwise`` (it would count those linears as 0), so the count is taken
    with the oneDNN path off: the same products through aten::mm/addmm, the same FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    from openjmp.models.gemnet_oc import linear as fast

    previous = fast.set_onednn_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        fast.set_onednn_enabled(previous)
    return float(counter.get_total_flops())


def profile_top_ops(fn, rows: int = 15) -> list[dict]:
    """One profiled call: the operators with the largest self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "calls": e.count,
             "fraction": e.self_cpu_time_total / total} for e in events[:rows]]


def run_case(name, fn, batch, repeats, peak, flops_cache, mkl_peak=None):
    if name not in flops_cache:
        flops_cache[name] = count_flops(fn)
    # with the tuned allocator freed memory stays resident, so the RSS at the start of a case
    # (recorded too) includes the heap kept from earlier cases
    rss_start = current_rss_mib()
    rss_reset = reset_peak_rss()
    # two warm-up calls: the heap only reaches its steady size in the second training step
    # (~1 GB of first-touch page faults in step 2 on batch8), which is not the model's speed
    timing = time_repeats(fn, repeats=repeats, warmup=WARMUP)
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
        # against torch.mm (MKL) alone, the peak definition of shared/bench/README.md
        "fraction_of_mkl_matmul_peak": gflops / mkl_peak if mkl_peak else None,
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_scope": "case" if rss_reset else "process so far",
        "rss_at_case_start_mib": rss_start,
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
                        default=None, help="default: train infer_direct infer_grad "
                        "infer_direct_bf16 train_bf16 (--quick: without train_bf16)")
    parser.add_argument("--structures", type=int, nargs="*", default=None,
                        help="indices of the batch8 structures to use (default: all 8)")
    parser.add_argument("--profile", action="store_true",
                        help="profile each batch8 case once and store the top operators")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default: benchmarks/results/gemnet_oc.json)")
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
    cases = args.cases if args.cases is not None else (
        ["train", "infer_direct", "infer_grad", "infer_direct_bf16"]
        + ([] if args.quick else ["train_bf16"]))  # "--cases" alone: bulk cells only
    full_batch = args.structures is None

    model = make_model()
    batch = load_batch8(args.structures)
    t0 = time.perf_counter()
    graphs = graphs_for(batch)
    graph_s = time.perf_counter() - t0
    rows = []
    results = {"machine": machine_info(), "config": {
        "model": "JMP-S (src/openjmp/configs/models/jmp_s.yaml)", "dtype": "float32",
        "graphs": "cutoff 12 A; max neighbours main 30, a2ee2a 20, qint 8, a2a 1000; all tags 2",
        "batch": "shared/bench/batch8.extxyz" + ("" if full_batch else
                                                  f" structures {args.structures}"),
        "batch_atoms": batch.num_atoms, "batch_structures": batch.num_structures,
        "repeats": repeats, "warmup": WARMUP,
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
        for name in cases:
            r = run_case(name, fns[name], batch, repeats, peak["peak_gflops"], flops_cache,
                         peak["mkl_peak_gflops"])
            ref = ORIGINAL_SECONDS.get((name, n_threads)) if full_batch else None
            if ref is not None:
                r["original_s"] = ref
                r["speedup_vs_original"] = ref / r["median_s"]
            if name == "train" and full_batch:
                # FLOPs of the original's step / our time: the rate the original's count implies
                r["original_flops_gflops_per_s"] = ORIGINAL_TRAIN_FLOPS / r["median_s"] / 1e9
            if args.profile:
                r["top_ops"] = profile_top_ops(fns[name])
            entry["cases"][f"batch8/{name}"] = r
            rows.append((n_threads, f"batch8/{name}", r))
            print(f"[{n_threads} thr] batch8/{name}: {r['median_s']:.2f} s", flush=True)
        for size in sizes:
            bb = bulk_batch(size)
            gb = graphs_for(bb)
            fn = case_functions(model, bb, gb)["infer_direct"]
            key = f"bulk{bb.num_atoms}/infer_direct"
            r = run_case(key, fn, bb, repeats, peak["peak_gflops"], flops_cache,
                         peak["mkl_peak_gflops"])
            r["edges_main"] = gb.main.num_edges
            entry["cases"][key] = r
            rows.append((n_threads, key, r))
            print(f"[{n_threads} thr] {key}: {r['median_s']:.2f} s", flush=True)
        # measure the peak again after the cases and keep the best per shape: one measurement
        # taken while another process competes for the core would inflate every fraction
        peak = merge_peaks(peak, matmul_peak_gflops())
        entry["matmul_peak"] = peak
        for r in entry["cases"].values():
            r["fraction_of_matmul_peak"] = r["gflops_per_s"] / peak["peak_gflops"]
            r["fraction_of_mkl_matmul_peak"] = r["gflops_per_s"] / peak["mkl_peak_gflops"]
        results["threads"][str(n_threads)] = entry
    if "infer_direct_bf16" in cases or "train_bf16" in cases:
        results["bf16_relative_deviation_batch8"] = bf16_deviation(model, batch, graphs)

    print(f"\n{'thr':>3} {'case':28} {'median s':>9} {'min':>7} {'max':>7} {'struct/s':>9} "
          f"{'atoms/s':>8} {'GFLOP':>8} {'GFLOP/s':>8} {'%peak':>6} {'RSS MiB':>8} {'vs orig':>7}")
    for n_threads, key, r in rows:
        vs = f"{r['speedup_vs_original']:6.2f}x" if "speedup_vs_original" in r else f"{'-':>7}"
        print(f"{n_threads:>3} {key:28} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f} "
              f"{r['structures_per_s']:9.2f} {r['atoms_per_s']:8.1f} {r['flops'] / 1e9:8.1f} "
              f"{r['gflops_per_s']:8.1f} {100 * r['fraction_of_matmul_peak']:6.1f} "
              f"{r['peak_rss_mib']:8.0f} {vs}")
        for op in r.get("top_ops", [])[:8]:
            print(f"      {op['op'][:40]:40} {op['self_s']:8.3f} s {100 * op['fraction']:5.1f}% "
                  f"{op['calls']:6d} calls")
    for n_threads in threads:
        p = results["threads"][str(n_threads)]["matmul_peak"]
        print(f"matmul peak ({n_threads} thr): {p['peak_gflops']:.1f} GFLOP/s (MKL alone "
              f"{p['mkl_peak_gflops']:.1f}) {p['shapes_gflops']}")
    print(f"wrote {write_results('gemnet_oc', results, args.out)}")


if __name__ == "__main__":
    main()
