"""Mini-suite generation throughput: structures (frames) per CPU hour per domain, one worker,
OMP_NUM_THREADS=1.

Each repeat is one work item of the domain's ``small`` plan (a slab relaxation, a molecule's
conformer set, an NEB, a relaxed molecule, an MD trajectory, a crystal), timed after one warm-up
item; the rate is frames written / item CPU time. In quick mode the MD items are shortened
(rMD17: 50 frames, MD22: 20 frames, each after 20 equilibration steps), so their rates include
a larger share of the relaxation set-up than the real run.

Usage: python benchmarks/generate.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_k] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

DOMAINS = ("mini-oc20", "mini-ani1x", "mini-transition1x", "mini-qm9", "mini-rmd17",
           "mini-md22", "mini-matbench")
QUICK_OVERRIDES = {"mini-rmd17": {"n_frames": 50, "equilibration": 20},
                   "mini-md22": {"n_frames": 20, "equilibration": 20}}


def frames_of(result: dict) -> int:
    energy = result["energy"]
    return 1 if energy.ndim == 0 else int(energy.shape[0])


def bench_domain(name: str, repeats: int, quick: bool) -> dict:
    from openjmp.data.generate.common import SkipStructure, item_rng
    from openjmp.data.generate.suite import domain_module

    mod = domain_module(name)
    items = mod.plan("small", 0)
    if quick:
        items = [dict(it, **QUICK_OVERRIDES.get(name, {})) for it in items]
    # cycle through the plan if it has fewer items than needed (rMD17, MD22)
    needed = repeats + 1
    items = [items[k % len(items)] for k in range(needed)]
    rates, seconds, frames, skipped = [], [], [], 0
    for k, item in enumerate(items):
        t0 = time.process_time()
        try:
            res = mod.work(dict(item), item_rng(0, name, k))
        except SkipStructure:
            skipped += 1
            continue
        dt = time.process_time() - t0
        if k == 0:
            continue  # warm-up (imports, tblite/RDKit initialisation)
        n = frames_of(res)
        rates.append(n / dt * 3600.0)
        seconds.append(dt)
        frames.append(n)
    return {
        "domain": name,
        "items": len(rates),
        "skipped": skipped,
        "frames_per_item_median": statistics.median(frames) if frames else 0,
        "item_seconds": {"median_s": statistics.median(seconds), "min_s": min(seconds),
                         "max_s": max(seconds)} if seconds else {},
        "structures_per_hour": {"median": statistics.median(rates), "min": min(rates),
                                "max": max(rates)} if rates else {},
        "overrides": QUICK_OVERRIDES.get(name, {}) if quick else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS))
    args = parser.parse_args()
    repeats = 5 if args.quick else 12
    rows = [bench_domain(name, repeats, args.quick) for name in args.domains]
    print(f"{'domain':<18} {'items':>5} {'frames/item':>11} {'s/item':>8} "
          f"{'structures/h (median)':>22} {'min':>9} {'max':>9}")
    for r in rows:
        s = r["structures_per_hour"]
        print(f"{r['domain']:<18} {r['items']:>5} {r['frames_per_item_median']:>11} "
              f"{r['item_seconds'].get('median_s', float('nan')):>8.2f} "
              f"{s.get('median', float('nan')):>22.0f} {s.get('min', float('nan')):>9.0f} "
              f"{s.get('max', float('nan')):>9.0f}")
    print("(one worker, OMP_NUM_THREADS=1; CPU time per item; multiply by workers for a pool)")
    path = write_results("generate", {"machine": machine_info(), "quick": args.quick,
                                      "repeats": repeats, "cases": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
