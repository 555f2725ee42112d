"""Pre-training datasets streamed from a converted store: which records are train / val, by
global store index, decided from the store metadata alone (no record is read).

The rules are those of the in-memory path (`openjmp.data.splits.assign_splits` and `subsample`)
applied to indices instead of records, so a store and the source it was converted from give the
same training and validation records in the same order:

* records whose stored split is ``train_split`` / ``val_split`` keep it; other named splits
  (``test``, ...) are not used;
* records without a split are dealt by a permutation seeded with ``seed``: ``val_fraction`` of
  them (at least one when there are two or more) to validation, the rest appended to training;
* ``max_train_records`` / ``max_val_records`` keep a seeded subset, in store order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from openjmp.data.store.dataset import StoreMetadata


@dataclass
class StoreSplit:
    """Global store indices of one dataset's training and validation records."""

    train: np.ndarray  # (n_train,) int64
    val: np.ndarray  # (n_val,) int64


def split_indices(meta: StoreMetadata, train_split: str, val_split: str, val_fraction: float | None,
                  seed: int) -> dict[str, np.ndarray]:
    """{train_split: indices, val_split: indices} of one store (see the module docstring).

    ``val_fraction=None``: records without a split all go to training (the store is a training
    source whose validation records come from elsewhere).
    """
    codes = np.asarray(meta.split)
    out: dict[str, np.ndarray] = {}
    for name in (train_split, val_split):
        out[name] = (np.flatnonzero(codes == meta.split_names.index(name))
                     if name in meta.split_names else np.zeros(0, dtype=np.int64))
    unassigned = np.flatnonzero(codes < 0)
    if unassigned.size == 0:
        return out
    if val_fraction is None:
        out[train_split] = np.concatenate([out[train_split], unassigned])
        return out
    n = unassigned.size
    perm = np.random.default_rng(seed).permutation(n)
    count = max(1, int(round(val_fraction * n))) if n > 1 else 0
    out[val_split] = np.concatenate([out[val_split], unassigned[np.sort(perm[:count])]])
    out[train_split] = np.concatenate([out[train_split], unassigned[np.sort(perm[count:])]])
    return out


def subsample_indices(indices: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` of ``indices``, chosen by a seeded permutation, order kept (as
    `openjmp.data.splits.subsample`)."""
    if limit is None or indices.size <= limit:
        return indices
    keep = np.sort(np.random.default_rng(seed).permutation(indices.size)[:limit])
    return indices[keep]


def store_split(train_meta: StoreMetadata, val_meta: StoreMetadata | None, *, train_split: str, val_split: str,
                val_fraction: float, seed: int, max_train: int | None, max_val: int | None) -> StoreSplit:
    """Training and validation indices of a dataset whose training source is a store and whose
    separate validation source (``val_meta``, every record used) is another store or None."""
    if val_meta is None:
        parts = split_indices(train_meta, train_split, val_split, val_fraction, seed)
        val = parts[val_split]
    else:
        parts = split_indices(train_meta, train_split, val_split, None, seed)
        # the separate validation source: every record (its labels are not consulted)
        val = np.arange(len(val_meta), dtype=np.int64)
    train = parts[train_split]
    return StoreSplit(subsample_indices(train, max_train, seed), subsample_indices(val, max_val, seed))


def fit_positions(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Positions (sorted) of a seeded subsample of at most ``limit`` of ``n`` training records,
    used to fit normalisation constants. ``limit=None`` or ``limit >= n``: all of them."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 7]).permutation(n)[:limit])


def fit_subsample(dataset, limit: int | None, seed: int) -> Iterator:
    """Records at `fit_positions` of ``dataset`` (a `StoreDataset` or a list of records), read
    one at a time in dataset order."""
    for i in fit_positions(len(dataset), limit, seed):
        yield dataset[int(i)]


def elements_present(meta: StoreMetadata, indices: np.ndarray) -> list[int]:
    """Sorted atomic numbers occurring in the records ``indices`` (from the metadata's CSR
    element counts; no record is read)."""
    lengths = np.diff(meta.element_ptr)
    mask = np.zeros(len(meta), dtype=bool)
    mask[indices] = True
    z = np.asarray(meta.element_z)[np.repeat(mask, lengths)]
    return np.flatnonzero(np.bincount(z.astype(np.int64), minlength=1)).tolist()
