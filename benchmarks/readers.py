"""Reader / store throughput: records per second for

- ``read``: iterating the ANI-1x reader over a synthetic ``ani1x-release.h5`` (with validation),
- ``convert``: reader → store (encode + LMDB writes + metadata),
- ``random_read_wN``: random-order access to the store through a torch DataLoader with N = 0
  and 2 workers (batch 32, records decoded to `AtomsRecord`, no collation).

Synthetic source: formula groups of 20-atom molecules (float32 coordinates, like ANI-1x).
Usage: python benchmarks/readers.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, time_repeats, write_results  # noqa: E402


def write_source(path: Path, n_records: int, n_atoms: int = 20, per_group: int = 500) -> None:
    import h5py

    rng = np.random.default_rng(0)
    base = np.stack(
        [np.arange(n_atoms) * 1.3, np.sin(np.arange(n_atoms)), np.zeros(n_atoms)], axis=1
    )
    z = rng.choice([1, 6, 7, 8], n_atoms).astype(np.uint8)
    with h5py.File(path, "w") as f:
        for g in range(0, n_records, per_group):
            nc = min(per_group, n_records - g)
            grp = f.create_group(f"C{g}H{n_atoms}")
            grp["atomic_numbers"] = z
            grp["coordinates"] = (
                base[None] + rng.normal(scale=0.05, size=(nc, n_atoms, 3))
            ).astype(np.float32)
            grp["wb97x_dz.energy"] = rng.normal(-400, 1, nc)
            grp["wb97x_dz.forces"] = rng.normal(0, 0.05, (nc, n_atoms, 3)).astype(np.float32)


def _collate_list(batch):
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from openjmp.data.readers import read
    from openjmp.data.store import StoreDataset, convert

    n = 2_000 if args.quick else 20_000
    n_reads = 1_000 if args.quick else 5_000
    repeats = 5
    work = Path(tempfile.mkdtemp(prefix="openjmp-bench-readers-"))
    try:
        src = work / "ani1x-release.h5"
        write_source(src, n)
        rows = []

        def read_all():
            for _ in read(src, "ani1x"):
                pass

        t = time_repeats(read_all, repeats)
        rows.append({"case": "read", "records": n, **t, "records_per_s": n / t["median_s"]})

        counter = iter(range(10**6))

        def do_convert():
            out = work / f"store{next(counter)}"
            convert(read(src, "ani1x"), out, shard_size=5_000, progress=False)
            shutil.rmtree(out)

        t = time_repeats(do_convert, repeats)
        rows.append({"case": "convert", "records": n, **t, "records_per_s": n / t["median_s"]})

        store = work / "store"
        convert(read(src, "ani1x"), store, shard_size=5_000, progress=False)
        ds = StoreDataset(store)
        order = np.random.default_rng(1).permutation(n)[:n_reads].tolist()
        for workers in (0, 2):
            loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(ds, order),
                batch_size=32,
                num_workers=workers,
                collate_fn=_collate_list,
                persistent_workers=False,
            )

            def read_random(loader=loader):
                count = sum(len(b) for b in loader)
                assert count == n_reads

            t = time_repeats(read_random, repeats)
            rows.append(
                {
                    "case": f"random_read_w{workers}",
                    "records": n_reads,
                    **t,
                    "records_per_s": n_reads / t["median_s"],
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"{'case':<16} {'records':>8} {'median s':>9} {'min s':>8} {'max s':>8} {'records/s':>10}"
    )
    for r in rows:
        print(
            f"{r['case']:<16} {r['records']:>8} {r['median_s']:>9.3f} {r['min_s']:>8.3f} {r['max_s']:>8.3f} "
            f"{r['records_per_s']:>10,.0f}"
        )
    print(
        "(random_read_w2 includes starting 2 worker processes per pass; the machine may be shared)"
    )
    config = {
        "records": n,
        "atoms_per_record": 20,
        "random_reads": n_reads,
        "batch_size": 32,
        "shard_size": 5000,
    }
    path = write_results(
        "readers", {"machine": machine_info(), "quick": args.quick, "config": config, "cases": rows}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
