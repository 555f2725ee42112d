"""Run the mini suite: plan → compute (parallel, cached, resumable) → write layout → card."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from openjmp.data.generate.common import SkipLog, run_items, split_results

log = logging.getLogger("openjmp.data.generate")

#: domain name -> module (each has NAME, SIZES, CARD, plan, work, write)
DOMAINS: dict[str, str] = {
    "mini-oc20": "openjmp.data.generate.oc20",
    "mini-ani1x": "openjmp.data.generate.ani1x",
    "mini-transition1x": "openjmp.data.generate.transition1x",
    "mini-qm9": "openjmp.data.generate.qm9",
    "mini-rmd17": "openjmp.data.generate.rmd17",
    "mini-md22": "openjmp.data.generate.md22",
    "mini-matbench": "openjmp.data.generate.matbench",
}
SIZES = ("tiny", "small", "medium")
CARD_FILE = "CARD.md"
#: marker of the machine-readable block inside each card
CARD_JSON_FENCE = "```json openjmp-card"


def domain_module(name: str):
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; choose from {sorted(DOMAINS)}")
    return importlib.import_module(DOMAINS[name])


def generate_domain(name: str, out_dir: Path, *, size: str = "small", seed: int = 0,
                    workers: int = 1, progress: bool = True, keep_cache: bool = False,
                    chunk_size: int | None = None) -> dict[str, Any]:
    """Generate one domain into ``out_dir/<name>`` and write its card. Returns the card info."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {SIZES}")
    mod = domain_module(name)
    target = Path(out_dir) / name
    items = mod.plan(size, seed)
    # the plan's hash in the cache name: a changed plan never reuses stale chunks
    plan_hash = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(out_dir) / ".cache" / f"{name}-{size}-seed{seed}-{plan_hash}"
    t0 = time.perf_counter()
    results = run_items(_timed_work, [{"_module": DOMAINS[name], **it} for it in items],
                        seed=seed, domain=name, cache_dir=cache, workers=workers,
                        chunk_size=chunk_size or getattr(mod, "CHUNK_SIZE", 4),
                        progress=progress)
    wall = time.perf_counter() - t0
    cpu = float(sum(float(r.get("_seconds", 0.0)) for r in results))
    for r in results:
        r.pop("_seconds", None)
    skips = SkipLog()
    kept = split_results(results, skips)
    target.mkdir(parents=True, exist_ok=True)
    written = mod.write(kept, items, target, seed)
    info = {
        "dataset": name,
        "size": size,
        "seed": seed,
        "work_items": len(items),
        "kept_items": len(kept),
        "skipped": skips.as_dict(),
        "skip_examples": skips.examples[:5],
        **written,
        "generation": {"compute_seconds": round(cpu, 1), "wall_seconds": round(wall, 1),
                       "workers": workers, "machine": platform.processor() or platform.machine()},
    }
    write_card(target, mod.CARD, info)
    if skips.counts:
        log.warning("%s: skipped %s", name, skips.as_dict())
    if not keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
        try:
            cache.parent.rmdir()
        except OSError:
            pass
    return info


def _timed_work(item: dict[str, Any], rng) -> dict:
    """Worker entry: dispatch to the domain's ``work`` and record its compute time."""
    import numpy as np

    item = dict(item)
    mod = importlib.import_module(item.pop("_module"))
    from openjmp.data.generate.common import SkipStructure

    t0 = time.process_time()
    try:
        res = mod.work(item, rng)
    except SkipStructure as exc:
        # keep the "<category>:" prefix; add which item it was
        what = ", ".join(f"{k}={v}" for k, v in item.items() if isinstance(v, (str, int)))
        raise SkipStructure(f"{exc} [{what}]") from exc
    finally:
        seconds = time.process_time() - t0
    res["_seconds"] = np.asarray(seconds)
    return res


def write_card(target: Path, card: dict[str, str], info: dict[str, Any]) -> None:
    from openjmp.data.generate.writers import write_text

    lines = [f"# {info['dataset']}", "",
             "Part of openjmp's real-physics mini suite (`openjmp data generate --suite mini`). "
             "Small, cheap stand-in for the real dataset in the same on-disk layout; the level "
             "of theory is **not** the original's.", ""]
    for key, title in (("what", "What"), ("how", "How"), ("calculator", "Calculator"),
                       ("units", "Layout and units"), ("splits", "Splits")):
        lines += [f"## {title}", "", card[key], ""]
    lines += ["## Counts", ""]
    lines += [f"- {k}: {v}" for k, v in info["counts"].items()]
    if info.get("splits"):
        lines += [f"- split {k}: {v}" for k, v in info["splits"].items()]
    lines += [f"- work items: {info['work_items']} planned, {info['kept_items']} kept",
              f"- skipped: {info['skipped'] or 'none'}", "",
              "## Reproduce", "",
              f"size `{info['size']}`, seed {info['seed']}: "
              f"`openjmp data generate --suite mini --size {info['size']} --seed {info['seed']} "
              f"--domains {info['dataset']} --out DIR` (same seed → identical files).", "",
              "## Generation time", "",
              f"{info['generation']['compute_seconds']} s of worker CPU, "
              f"{info['generation']['wall_seconds']} s wall with {info['generation']['workers']} "
              f"worker(s) on {info['generation']['machine']}.", "",
              "## Files", ""]
    lines += [f"- `{f}`" for f in info["files"]]
    lines += ["", "## Machine-readable summary", "", CARD_JSON_FENCE,
              json.dumps(info, indent=2, sort_keys=True), "```", ""]
    write_text(target / CARD_FILE, "\n".join(lines))


def rerender_card(dataset_dir: Path) -> None:
    """Rewrite ``CARD.md`` from the domain's current card text and the card's own recorded
    summary (for documentation fixes that do not need the data regenerated)."""
    info = read_card_info(dataset_dir)
    write_card(Path(dataset_dir), domain_module(info["dataset"]).CARD, info)


def read_card_info(dataset_dir: Path) -> dict[str, Any]:
    """The machine-readable block of ``<dataset_dir>/CARD.md``."""
    text = (Path(dataset_dir) / CARD_FILE).read_text()
    start = text.index(CARD_JSON_FENCE) + len(CARD_JSON_FENCE)
    end = text.index("```", start)
    return json.loads(text[start:end])


def generate_suite(out_dir: Path, *, size: str = "small", seed: int = 0, workers: int = 1,
                   domains: list[str] | None = None, progress: bool = True,
                   keep_cache: bool = False) -> dict[str, dict[str, Any]]:
    """Generate every requested domain (all by default) into ``out_dir``."""
    out = {}
    for name in domains or list(DOMAINS):
        out[name] = generate_domain(name, Path(out_dir), size=size, seed=seed, workers=workers,
                                    progress=progress, keep_cache=keep_cache)
    write_suite_index(Path(out_dir))
    return out


def write_suite_index(root: Path) -> None:
    """``<root>/README.md``: one table row per dataset folder with a card (counts, skips,
    worker CPU time, size on disk)."""
    from openjmp.data.generate.writers import write_text

    rows, total_cpu, sizes, seeds = [], 0.0, set(), set()
    for name in DOMAINS:
        if not (root / name / CARD_FILE).is_file():
            continue
        info = read_card_info(root / name)
        sizes.add(info["size"])
        seeds.add(info["seed"])
        nbytes = sum(p.stat().st_size for p in (root / name).rglob("*") if p.is_file())
        counts = ", ".join(f"{k} {v}" for k, v in info["counts"].items() if k != "atoms_total")
        skipped = ", ".join(f"{k} {v}" for k, v in info["skipped"].items()) or "none"
        total_cpu += info["generation"]["compute_seconds"]
        rows.append(f"| [{name}]({name}/{CARD_FILE}) | {counts} | {skipped} | "
                    f"{info['generation']['compute_seconds']:.0f} | {nbytes / 2**20:.2f} |")
    total = sum(p.stat().st_size for p in root.rglob("*")
                if p.is_file() and ".cache" not in p.parts and p.name != "README.md")
    size = "/".join(sorted(sizes))
    seed = "/".join(str(s) for s in sorted(seeds))
    text = f"""# openjmp mini suite (`{size}`, seed {seed})

Real-physics stand-ins for every dataset domain of the JMP paper, in the on-disk layouts of the
originals (so the real readers are exercised), computed with EMT (metals, adsorbates, bulk) and
GFN2-xTB via tblite (organic molecules). **The levels of theory are not the originals'**; where a
layout names its level in a key (ANI-1x `wb97x_dz.*`, Transition1x `wB97x_6-31G(d).*`) the real
key names are kept and each card says so. Regenerate with

    openjmp data generate --suite mini --size {size} --seed {seed} --workers 2 --out DIR

(same seed → identical data files; the cards differ only in the recorded generation times).
Each folder holds a `{CARD_FILE}` (what, how, calculator and settings, units, counts, splits,
seed, generation time, machine-readable summary). See also `docs/mini-suite.md`.

| dataset | counts | skipped (counted reasons) | worker CPU s | MiB |
|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Total: {total / 2**20:.1f} MiB, {total_cpu / 60:.1f} min of worker CPU (one thread per worker).
"""
    write_text(root / "README.md", text)
