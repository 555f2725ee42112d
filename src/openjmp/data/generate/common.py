"""Pieces shared by every mini-dataset generator: seeding, atomic and byte-deterministic file
writes, the per-chunk resumable cache, the skip log and the worker pool.

A *work item* is a small JSON-able dict describing one system to compute (a molecule, a slab, a
reaction, a crystal). A worker turns it into a *result*: a flat dict ``str -> np.ndarray`` (or
``{"skip": reason}`` when the system had to be dropped). Results are cached per chunk of items in
``<out>/.cache/<domain>/chunk_NNNNN.npz`` so an interrupted run resumes where it stopped; the
writers then assemble the real on-disk layout from the results, in item order, so the files do
not depend on the number of workers or on the order in which chunks finish.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import tarfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("openjmp.data.generate")

#: environment every worker (and the parent, before tblite is imported) runs with: tblite and
#: BFGS are 8-500x slower with 2 OpenMP threads on a 2-core machine than with one.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

#: fixed timestamp written into zip/gzip/tar members so that equal content gives equal bytes
FIXED_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

Result = dict[str, np.ndarray]


def force_single_thread_env() -> None:
    """Set the single-thread variables in this process (inherited by spawned workers)."""
    os.environ.update(SINGLE_THREAD_ENV)


# --------------------------------------------------------------------------------------------
# seeding


def item_seed(seed: int, domain: str, index: int) -> np.random.SeedSequence:
    """Seed of one work item: depends only on (suite seed, domain name, item index)."""
    digest = hashlib.sha256(domain.encode()).digest()
    return np.random.SeedSequence([int(seed), int.from_bytes(digest[:4], "little"), int(index)])


def item_rng(seed: int, domain: str, index: int) -> np.random.Generator:
    return np.random.default_rng(item_seed(seed, domain, index))


def stable_uid(*parts: Any) -> str:
    """A 32-hex-digit id that depends only on ``parts`` (used for ASE-db ``unique_id``)."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# skips


class SkipStructure(Exception):
    """Raised inside a worker: this system is dropped; the message is the counted reason.

    The message should start with a short category (``"emt-element: ..."``,
    ``"xtb-scf: ..."``, ``"rdkit-embed: ..."``) so that skips can be counted per category.
    """


@dataclass
class SkipLog:
    """Counts of dropped systems per reason category, plus the first few full messages."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str) -> None:
        category = reason.split(":", 1)[0].strip()
        self.counts[category] += 1
        if len(self.examples) < 20:
            self.examples.append(reason)
        log.info("skipped: %s", reason)

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


# --------------------------------------------------------------------------------------------
# atomic, deterministic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then move the finished file onto ``path`` atomically.

    Used for writers that need a real file path (h5py, LMDB). If ``write`` raises, nothing is
    left at ``path`` (and any previous file there is untouched).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    lock = tmp.with_name(tmp.name + "-lock")
    try:
        if tmp.exists():
            tmp.unlink()
        write(tmp)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, lock):
            if leftover.exists():
                leftover.unlink()


def npz_bytes(arrays: dict[str, np.ndarray], compress: bool = True) -> bytes:
    """Bytes of an ``.npz`` archive (as ``np.savez[_compressed]``) with fixed member timestamps.

    ``np.savez`` stamps members with the current time, so two runs would differ; this writes the
    same members (``<key>.npy`` in the ``.npy`` format) with a constant date instead.
    """
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=FIXED_ZIP_DATE)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with mtime 0 and no file name in the header (deterministic)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def tar_bz2_bytes(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A ``.tar.bz2`` archive of (name, content) with fixed mtime/owner (deterministic)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# per-chunk cache


def save_chunk(path: Path, results: Sequence[Result]) -> None:
    """Cache results of consecutive items as one npz: member ``"<i>/<key>"`` (i within chunk)."""
    arrays: dict[str, np.ndarray] = {"n_items": np.asarray(len(results))}
    for i, res in enumerate(results):
        for key, value in res.items():
            arrays[f"{i}/{key}"] = np.asarray(value)
    atomic_write_bytes(path, npz_bytes(arrays, compress=False))


def load_chunk(path: Path) -> list[Result]:
    with np.load(path, allow_pickle=False) as z:
        n = int(z["n_items"])
        out: list[Result] = [{} for _ in range(n)]
        for name in z.files:
            if name == "n_items":
                continue
            i, key = name.split("/", 1)
            value = z[name]
            out[int(i)][key] = value
    return out


def is_skip(result: Result) -> bool:
    return "skip" in result


def skip_reason(result: Result) -> str:
    return str(result["skip"])


# --------------------------------------------------------------------------------------------
# pool


def _worker_init() -> None:
    force_single_thread_env()


def _run_chunk(args: tuple[Callable[[dict, np.random.Generator], Result], list[dict], int, str,
                           int]) -> list[Result]:
    work, items, seed, domain, start = args
    out = []
    for offset, item in enumerate(items):
        rng = item_rng(seed, domain, start + offset)
        try:
            out.append(work(item, rng))
        except SkipStructure as exc:
            out.append({"skip": np.asarray(str(exc))})
    return out


def run_items(
    work: Callable[[dict, np.random.Generator], Result],
    items: Sequence[dict],
    *,
    seed: int,
    domain: str,
    cache_dir: Path,
    workers: int = 1,
    chunk_size: int = 8,
    progress: bool = True,
) -> list[Result]:
    """Compute ``work(item, rng)`` for every item (in parallel, cached per chunk, resumable).

    Args:
        work: a module-level function (picklable); raises `SkipStructure` to drop an item.
        items: work items (small dicts).
        seed, domain: define each item's random generator (`item_rng`), independent of workers.
        cache_dir: folder of chunk files; existing chunks are loaded instead of recomputed.
        workers: processes; 1 runs in this process.
        progress: a bar in a terminal, else progress lines (:class:`openjmp.progress.Progress`).

    Returns:
        one result per item, in item order.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    chunks = [(start, list(items[start : start + chunk_size]))
              for start in range(0, len(items), chunk_size)]
    results: dict[int, list[Result]] = {}
    todo = []
    for start, chunk_items in chunks:
        path = cache_dir / f"chunk_{start:06d}_{len(chunk_items):03d}.npz"
        if path.exists():
            results[start] = load_chunk(path)
        else:
            todo.append((start, chunk_items, path))

    from openjmp.progress import Progress

    # a bar in a terminal, else a line at least every $OPENJMP_PROGRESS_INTERVAL s (30); cached
    # items count as done and not towards the rate
    cached = len(items) - sum(len(c[1]) for c in todo)
    with Progress(domain, total=len(items), unit="item", start=cached, enabled=progress) as bar:

        def finish(start: int, path: Path, chunk_results: list[Result]) -> None:
            save_chunk(path, chunk_results)
            results[start] = chunk_results
            bar.advance(len(chunk_results))

        if workers <= 1 or len(todo) <= 1:
            force_single_thread_env()
            for start, chunk_items, path in todo:
                finish(start, path, _run_chunk((work, chunk_items, seed, domain, start)))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            force_single_thread_env()  # spawned children inherit the environment
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                     initializer=_worker_init) as pool:
                futures = {pool.submit(_run_chunk, (work, chunk_items, seed, domain, start)):
                           (start, path) for start, chunk_items, path in todo}
                for fut in as_completed(futures):
                    start, path = futures[fut]
                    finish(start, path, fut.result())
    ordered: list[Result] = []
    for start, _ in chunks:
        ordered.extend(results[start])
    return ordered


def split_results(results: Iterable[Result], skips: SkipLog) -> list[tuple[int, Result]]:
    """(item index, result) of kept items; skipped ones are counted in ``skips``."""
    kept = []
    for i, res in enumerate(results):
        if is_skip(res):
            skips.add(skip_reason(res))
        else:
            kept.append((i, res))
    return kept


def split_names(n: int, fractions: tuple[float, float, float], rng: np.random.Generator
                ) -> np.ndarray:
    """Assign ``n`` groups to splits 0/1/2 (train/val/test) with a seeded permutation; every
    split gets at least one group when ``n >= 3``."""
    perm = rng.permutation(n)
    n_val = max(1, int(round(fractions[1] * n))) if n >= 3 else 0
    n_test = max(1, int(round(fractions[2] * n))) if n >= 3 else 0
    labels = np.zeros(n, dtype=np.int64)
    labels[perm[:n_val]] = 1
    labels[perm[n_val : n_val + n_test]] = 2
    return labels
