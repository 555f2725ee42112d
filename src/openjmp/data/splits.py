"""Loading the train / val / test records of a source, with deterministic fallback splits.

When the source defines splits (Transition1x split groups, rMD17 index files, a converted store,
...) they are used as they are. Otherwise records are assigned by a seeded permutation so that
the same (path, seed, fractions) always give the same split.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from openjmp.data.record import AtomsRecord


def read_items(path: Path, format: str | None = None, **options):
    """All (split, record) items of a source via the readers registry."""
    from openjmp.data.readers import read

    return list(read(path, format=format, **options))


def assign_splits(
    items,
    fractions: dict[str, float],
    seed: int,
    rest: str = "train",
) -> dict[str, list[AtomsRecord]]:
    """Group records by their source split; records without one are split by a seeded
    permutation: ``fractions`` (e.g. {"val": 0.1, "test": 0.1}) taken in order, ``rest`` gets
    the remainder."""
    by_split: dict[str, list[AtomsRecord]] = defaultdict(list)
    unassigned: list[AtomsRecord] = []
    for split, record in items:
        (unassigned if split is None else by_split[split]).append(record)
    if unassigned:
        n = len(unassigned)
        perm = np.random.default_rng(seed).permutation(n)
        start = 0
        for name, fraction in fractions.items():
            count = max(1, int(round(fraction * n))) if n > 1 else 0
            by_split[name].extend(unassigned[i] for i in sorted(perm[start : start + count]))
            start += count
        by_split[rest].extend(unassigned[i] for i in sorted(perm[start:]))
    return dict(by_split)


def subsample(records: list[AtomsRecord], limit: int | None, seed: int) -> list[AtomsRecord]:
    """At most ``limit`` records, chosen by a seeded permutation (order kept)."""
    if limit is None or len(records) <= limit:
        return records
    keep = np.sort(np.random.default_rng(seed).permutation(len(records))[:limit])
    return [records[i] for i in keep]
