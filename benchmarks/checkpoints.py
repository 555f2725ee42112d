"""Checkpoint loading time: published-layout JMP checkpoints through the restricted unpickler.

Writes a synthetic checkpoint in the published Lightning layout (random weights, EMA tuple, AdamW
moments -- the 4 float32 copies the real files hold) to a temporary folder, then times (page cache
warm, >= 5 repeats after a warm-up):

* ``torch.load(weights_only=False, mmap=True)``: torch's C unpickler, trusting the file (baseline);
* ``load_checkpoint_file``: the same file through openjmp's restricted pure-Python unpickler;
* ``load_jmp_checkpoint``: restricted read + strict key/shape check + EMA + one tensor per name;
* ``load_model_file``: the converted openjmp model file (``torch.load(weights_only=True)``).

``--quick``: JMP-S only (a 0.7 GB file); default: JMP-S and JMP-L (3.7 GB; needs that much free
space in the temporary folder). Usage: python benchmarks/checkpoints.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, time_repeats, write_results  # noqa: E402


def write_fake(path: Path, variant: str) -> float:
    import torch

    from openjmp.checkpoints import jmp

    spec = jmp.published_key_spec(variant)
    gen = torch.Generator().manual_seed(0)
    sd = OrderedDict()
    for e in spec.entries:
        sd[e.name] = sd[e.alias_of] if e.alias_of else torch.randn(e.shape, generator=gen)
    keys = spec.ema_keys()
    ema = tuple(sd[k] + 0.01 for k in keys)
    opt = {"state": {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(sd[k]),
                         "exp_avg_sq": torch.zeros_like(sd[k])} for i, k in enumerate(keys)},
           "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.95), "params": list(range(len(keys)))}]}
    t0 = time.perf_counter()
    torch.save({"epoch": 1, "global_step": 2, "state_dict": sd, "hyper_parameters": {},
                "optimizer_states": [{"ema": ema, "opt": opt, "decay": 0.99, "every_n_steps": 1}]}, path)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import torch

    from openjmp.checkpoints import jmp
    from openjmp.checkpoints.convert import convert_jmp_checkpoint
    from openjmp.checkpoints.format import load_model_file
    from openjmp.checkpoints.safe_unpickle import load_checkpoint_file

    variants = ["jmp-s"] if args.quick else ["jmp-s", "jmp-l"]
    repeats = 5
    rows = []
    with tempfile.TemporaryDirectory(prefix="openjmp-ckpt-bench-") as tmp:
        for variant in variants:
            src = Path(tmp) / f"{variant}.ckpt"
            write_s = write_fake(src, variant)
            dst = Path(tmp) / f"{variant}-openjmp.pt"
            convert_jmp_checkpoint(src, dst, hash_source=False)
            cases = {
                "torch_load_unrestricted": lambda src=src: torch.load(src, weights_only=False, mmap=True),
                "restricted_unpickler": lambda src=src: load_checkpoint_file(src),
                "load_jmp_checkpoint": lambda src=src: jmp.load_jmp_checkpoint(src),
                "openjmp_model_file": lambda dst=dst: load_model_file(dst),
            }
            row = {"variant": variant, "file_bytes": src.stat().st_size,
                   "converted_bytes": dst.stat().st_size, "write_s": write_s}
            for name, fn in cases.items():
                row[name] = time_repeats(fn, repeats)
            row["restricted_over_unrestricted"] = (
                row["restricted_unpickler"]["median_s"] / row["torch_load_unrestricted"]["median_s"])
            rows.append(row)
            os.unlink(src)
            os.unlink(dst)
    print(f"{'variant':<7} {'file GB':>8} {'torch.load':>11} {'restricted':>11} {'load_jmp':>9} "
          f"{'converted':>10}   (median seconds, {repeats} repeats, warm cache)")
    for r in rows:
        print(f"{r['variant']:<7} {r['file_bytes'] / 1e9:>8.2f} "
              f"{r['torch_load_unrestricted']['median_s']:>11.3f} {r['restricted_unpickler']['median_s']:>11.3f} "
              f"{r['load_jmp_checkpoint']['median_s']:>9.3f} {r['openjmp_model_file']['median_s']:>10.3f}")
    path = write_results("checkpoints", {"machine": machine_info(), "quick": args.quick,
                                         "config": {"repeats": repeats, "warmup": 1, "mmap": True},
                                         "cases": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
