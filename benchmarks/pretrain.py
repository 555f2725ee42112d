"""Pre-training throughput on the mini suite: steps/s, structures/s, and the fraction of step
time spent waiting for data (graph building + collation), with a cold and a warm graph cache.
``--store``: the same datasets converted to stores (in a temporary folder) and streamed (records
read and graphs built on every access, as for OC20-scale data), with 0 and 1 DataLoader workers;
results go to ``results/pretrain_store.json``.

Usage: python benchmarks/pretrain.py [--quick] [--store] [--config configs/pretrain/mini.yaml]
The training step is the real one (PretrainModule.training_step: forward, per-task heads,
structure-wise loss) + backward + gradient clipping + AdamW + EMA, on one thread.
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

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--config", default=str(ROOT / "configs" / "pretrain" / "mini.yaml"))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--store", action="store_true", help="stream the datasets from converted stores")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from openjmp.configuration import load_config
    from openjmp.training.config import PretrainConfig
    from openjmp.training.pretrain import PretrainDataModule, PretrainModule

    steps = args.steps or (10 if args.quick else 40)
    cfg = load_config(PretrainConfig, args.config, ["trainer.progress_bar=false"])
    tmp = None
    if args.store:
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="openjmp-bench-")
        t0 = time.perf_counter()
        to_stores(cfg, Path(tmp.name))
        print(f"converted the datasets to stores in {time.perf_counter() - t0:.1f} s")
    dm = PretrainDataModule(cfg)
    t0 = time.perf_counter()
    dm.load()
    load_s = time.perf_counter() - t0
    module = PretrainModule(cfg.model_dump(mode="json"), [n.as_dict() for n in dm.normalizers])
    optimizer = module.configure_optimizers()["optimizer"]
    phases = (("streamed, 0 workers", 0), ("streamed, 1 worker", 1)) if args.store else (
        ("cold graph cache", 0), ("warm graph cache", 0))
    rows = []
    for phase, workers in phases:
        cfg.sampler.num_workers = workers
        loader = dm.train_dataloader()
        loader.batch_sampler.set_epoch(0)  # same batches in every phase (warm: the cache is filled)
        it = iter(loader)
        data_t, step_t, structures = [], [], 0
        for _ in range(steps):
            t0 = time.perf_counter()
            batch = next(it).to(dtype=module.dtype_)
            t1 = time.perf_counter()
            loss = module.training_step(batch, 0)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.optim.grad_clip_norm or 1e9)
            optimizer.step()
            if module.ema is not None:
                module.ema.update(module.model)
            t2 = time.perf_counter()
            data_t.append(t1 - t0)
            step_t.append(t2 - t1)
            structures += batch.num_structures
        del it
        total = sum(data_t) + sum(step_t)
        rows.append({
            "phase": phase, "steps": steps, "batch_size": cfg.sampler.batch_size, "num_workers": workers,
            "steps_per_s": steps / total, "structures_per_s": structures / total,
            "data_wait_fraction": sum(data_t) / total,
            "median_step_s": statistics.median([a + b for a, b in zip(data_t, step_t)]),
            "min_step_s": min(a + b for a, b in zip(data_t, step_t)),
            "max_step_s": max(a + b for a, b in zip(data_t, step_t)),
        })
    params = sum(p.numel() for p in module.model.parameters())
    source = "streamed stores" if args.store else "in memory"
    print(f"mini pre-training ({source}), {params / 1e6:.2f} M parameters, dataset loading {load_s:.1f} s, 1 thread")
    print(f"{'phase':<18} {'steps/s':>8} {'structures/s':>13} {'data wait':>10} {'median step s':>14}")
    for r in rows:
        print(f"{r['phase']:<18} {r['steps_per_s']:>8.3f} {r['structures_per_s']:>13.2f} "
              f"{100 * r['data_wait_fraction']:>9.1f}% {r['median_step_s']:>14.3f}")
    path = write_results("pretrain_store" if args.store else "pretrain", {
        "machine": machine_info(), "quick": args.quick, "config": args.config, "store": args.store,
        "parameters": params, "dataset_load_s": load_s, "cases": rows})
    print(f"wrote {path}")
    if tmp is not None:
        tmp.cleanup()


def to_stores(cfg, folder: Path) -> None:
    """Convert every dataset (and val_path) of ``cfg`` into a store under ``folder`` and point the
    config at the stores (streamed)."""
    from openjmp.data.readers import read
    from openjmp.data.store import convert

    for d in cfg.datasets:
        for attr in ("path", "val_path"):
            src = getattr(d, attr)
            if src is None:
                continue
            out = folder / f"{d.name}-{attr}"
            convert(read(src, format=d.format, **d.reader_options), out, progress=False)
            setattr(d, attr, out)
        d.format, d.reader_options, d.streaming = "store", {}, True


if __name__ == "__main__":
    main()
