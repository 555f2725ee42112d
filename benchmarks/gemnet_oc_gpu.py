"""GemNet-OC (JMP-S hyperparameters) speed on a CUDA GPU.

The same cases, batch and graph settings as ``benchmarks/gemnet_oc.py`` (standard batch
``shared/bench/batch8.extxyz``, 8 structures / 391 atoms, cutoff 12 Å, max neighbours
main 30 / a2ee2a 20 / qint 8 / a2a 1000, quadruplets for every atom):

* ``train`` / ``train_bf16``: energy + direct forces, loss, backward, AdamW step (float32; the
  second with the forward pass under bf16 autocast);
* ``infer_direct`` / ``infer_direct_bf16``: energy + direct forces, no grad;
* ``infer_grad``: energy + gradient forces (-dE/dpos);

plus ``train``, ``train_ckpt`` (``train`` with activation checkpointing), ``train_bf16`` and
``infer_direct`` on rattled fcc Cu bulk cells of ~100 / 1,000 /
5,000 atoms (how the cost grows). Graphs are built once on the CPU (vesin; their time is reported
separately); the triplet/quadruplet indices are built on the GPU inside every call, as in training.

Per case: milliseconds per call (median, min, max of ``--repeats`` calls after 3 warm-ups, each
timed with ``torch.cuda.synchronize``), structures/s, atoms/s, FLOPs per call
(``torch.utils.flop_counter``), achieved TFLOP/s and its fraction of the fp32 (no TF32) and bf16
matmul peaks measured in the same run (8192^3 products and the 11730x512x512 edge-MLP shape),
and the peak GPU memory (``torch.cuda.max_memory_allocated``). ``--profile``: the CUDA kernels
with the largest total time in one ``train`` call. Writes ``benchmarks/results/gemnet_oc_gpu.json``
(or ``--out``).

Usage: python benchmarks/gemnet_oc_gpu.py [--repeats 20] [--sizes 100 1000 5000] [--profile]
       [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402
from gemnet_oc import (  # noqa: E402
    bf16_deviation,
    bulk_batch,
    case_functions,
    count_flops,
    graphs_for,
    load_batch8,
    make_model,
)

WARMUP = 3
BATCH8_CASES = ["train", "train_bf16", "infer_direct", "infer_direct_bf16", "infer_grad"]
BULK_CASES = ["train", "train_ckpt", "train_bf16", "infer_direct"]


def with_block_checkpointing(model, fn):
    """``fn`` with activation checkpointing of the interaction blocks
    (``trainer.activation_checkpointing``): less memory, ~1/3 more compute."""
    def run():
        model.backbone.checkpoint_blocks = True
        try:
            fn()
        finally:
            model.backbone.checkpoint_blocks = False
    return run


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_cuda(fn, repeats: int, warmup: int = WARMUP) -> dict:
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - t0)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
            "max_ms": 1e3 * max(times), "repeats": repeats}


def matmul_peaks(device) -> dict:
    """TFLOP/s of large products: fp32 (TF32 off, the model's default), TF32, bf16."""
    out = {}
    shapes = {"11730x512x512": (11730, 512, 512)}
    if device.type == "cuda":  # (--device cpu is a smoke test of this script)
        shapes["8192^3"] = (8192, 8192, 8192)
    previous = torch.backends.cuda.matmul.allow_tf32
    try:
        for label, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                                   ("bf16", torch.bfloat16, False)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            for shape_name, (m, k, n) in shapes.items():
                a = torch.randn(m, k, device=device, dtype=dtype)
                b = torch.randn(k, n, device=device, dtype=dtype)
                reps = 10 if m * k * n > 1e10 or device.type != "cuda" else 200
                t = time_cuda(lambda a=a, b=b: torch.mm(a, b), repeats=reps)
                out[f"{label}/{shape_name}"] = 2 * m * k * n / (t["median_ms"] / 1e3) / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return {"tflops": out,
            "fp32_peak_tflops": max(v for k, v in out.items() if k.startswith("fp32")),
            "bf16_peak_tflops": max(v for k, v in out.items() if k.startswith("bf16"))}


def run_case(name, fn, batch, repeats, peaks, flops_cache) -> dict:
    if name not in flops_cache:
        flops_cache[name] = count_flops(fn)
    cuda = batch.pos.device.type == "cuda"
    synchronize()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timing = time_cuda(fn, repeats)
    seconds = timing["median_ms"] / 1e3
    tflops = flops_cache[name] / seconds / 1e12
    peak = peaks["bf16_peak_tflops"] if "bf16" in name else peaks["fp32_peak_tflops"]
    return {**timing, "structures_per_s": batch.num_structures / seconds,
            "atoms_per_s": batch.num_atoms / seconds, "flops": flops_cache[name],
            "tflops_per_s": tflops, "fraction_of_matmul_peak": tflops / peak,
            "peak_reference": "bf16" if "bf16" in name else "fp32",
            "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")}


def profile_kernels(fn, rows: int = 15) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    fn()
    synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        synchronize()
    events = [e for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0]
    total = sum(e.self_device_time_total for e in events) or 1.0
    events.sort(key=lambda e: -e.self_device_time_total)
    return [{"op": e.key, "self_device_ms": e.self_device_time_total / 1e3, "calls": e.count,
             "fraction": e.self_device_time_total / total} for e in events[:rows]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 5000])
    parser.add_argument("--cases", nargs="*", default=BATCH8_CASES)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only to smoke-test")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gemnet_oc_gpu: CUDA is not available on this machine")
    torch.backends.cuda.matmul.allow_tf32 = False  # the model's exact float32 (the default)

    model = make_model().to(device)
    cpu_batch = load_batch8()
    t0 = time.perf_counter()
    cpu_graphs = graphs_for(cpu_batch)
    graph_s = time.perf_counter() - t0
    batch, graphs = cpu_batch.to(device), cpu_graphs.to(device)
    gpu = {}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gpu = {"gpu": props.name, "gpu_memory_gib": props.total_memory / 2**30,
               "cuda": torch.version.cuda}
    results = {"machine": {**machine_info(), **gpu},
               "config": {"model": "JMP-S (src/openjmp/configs/models/jmp_s.yaml)",
                          "graphs": "cutoff 12 A; max neighbours main 30, a2ee2a 20, qint 8, "
                                    "a2a 1000; all tags 2",
                          "batch": "shared/bench/batch8.extxyz", "batch_atoms": batch.num_atoms,
                          "repeats": args.repeats, "warmup": WARMUP,
                          "batch8_graph_construction_cpu_s": graph_s},
               "matmul_peak": matmul_peaks(device), "cases": {}}
    peaks = results["matmul_peak"]
    flops_cache: dict[str, float] = {}
    rows = []
    fns = case_functions(model, batch, graphs)
    for name in args.cases:
        r = run_case(name, fns[name], batch, args.repeats, peaks, flops_cache)
        results["cases"][f"batch8/{name}"] = r
        rows.append((f"batch8/{name}", r))
        print(f"batch8/{name}: {r['median_ms']:.1f} ms", flush=True)
    if args.profile:
        results["train_top_kernels"] = profile_kernels(fns["train"])
    results["bf16_relative_deviation_batch8"] = bf16_deviation(model, batch, graphs)
    for size in args.sizes:
        bb_cpu = bulk_batch(size)
        t0 = time.perf_counter()
        gb_cpu = graphs_for(bb_cpu)
        g_s = time.perf_counter() - t0
        bb, gb = bb_cpu.to(device), gb_cpu.to(device)
        fns_bulk = case_functions(model, bb, gb)
        fns_bulk["train_ckpt"] = with_block_checkpointing(model, fns_bulk["train"])
        for name in BULK_CASES:
            key = f"bulk{bb.num_atoms}/{name}"
            try:
                r = run_case(key, fns_bulk[name], bb, max(3, args.repeats // 4), peaks,
                             flops_cache)
            except torch.cuda.OutOfMemoryError as exc:
                r = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            if device.type == "cuda":
                torch.cuda.empty_cache()
            r["edges_main"] = gb.main.num_edges
            r["graph_construction_cpu_s"] = g_s
            results["cases"][key] = r
            rows.append((key, r))
            print(f"{key}: {r.get('median_ms', float('nan')):.1f} ms", flush=True)
        del fns_bulk, bb, gb

    print(f"\n{'case':26} {'median ms':>9} {'min':>8} {'max':>8} {'struct/s':>9} "
          f"{'atoms/s':>9} {'GFLOP':>8} {'TFLOP/s':>8} {'%peak':>6} {'mem MiB':>8}")
    for key, r in rows:
        if "error" in r:
            print(f"{key:26} {r['error']}")
            continue
        print(f"{key:26} {r['median_ms']:9.2f} {r['min_ms']:8.2f} {r['max_ms']:8.2f} "
              f"{r['structures_per_s']:9.1f} {r['atoms_per_s']:9.0f} {r['flops'] / 1e9:8.1f} "
              f"{r['tflops_per_s']:8.2f} {100 * r['fraction_of_matmul_peak']:6.1f} "
              f"{r['peak_memory_mib']:8.0f}")
    print("matmul peaks (TFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                 peaks["tflops"].items()))
    for op in results.get("train_top_kernels", [])[:12]:
        print(f"  {op['op'][:60]:60} {op['self_device_ms']:8.2f} ms {100 * op['fraction']:5.1f}% "
              f"{op['calls']:5d} calls")
    print(f"wrote {write_results('gemnet_oc_gpu', results, args.out)}")


if __name__ == "__main__":
    main()
