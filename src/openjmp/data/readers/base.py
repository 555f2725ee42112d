"""What every reader shares: the item it yields, its error type, skip-bad bookkeeping.

A reader is an iterable object built from a path and options. Iterating it yields
`ReaderItem(split, record)` pairs: ``split`` is the split name the *source* defines (or that
an explicit split option asks for), else ``None``; ``record`` is an `AtomsRecord` in eV / Å /
eV/Å whose ``source`` is ``"<file>:<group or key>/<frame>"`` and whose ``dataset`` is the
dataset name. After (or during) iteration ``reader.skipped`` maps reason → number of records
left out (documented skips such as ANI-1x NaN rows, and bad records under ``skip_bad``).

Bad input raises `DataFormatError` naming the file and the record, unless the reader was made
with ``skip_bad=True``: then the record is skipped and counted under its reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from openjmp.data.record import AtomsRecord, InvalidStructureError


class DataFormatError(ValueError):
    """A source file (or one record in it) does not have the layout or values we expect."""


class ReaderItem(NamedTuple):
    """One yielded record and the split the source assigns it to (None when it assigns none)."""

    split: str | None
    record: AtomsRecord


class Reader:
    """Base class. Subclasses set ``name`` and implement ``_items()``.

    Args:
        path: file or folder of the source.
        skip_bad: skip (and count) records that fail checks instead of raising.
        validate: run `AtomsRecord.validate` on every record (finite values, shapes, Z range,
            no overlapping atoms).
    """

    name: ClassVar[str] = ""
    #: dataset name put into records when the reader cannot infer a better one
    dataset: ClassVar[str] = ""

    def __init__(
        self, path, *, skip_bad: bool = False, validate: bool = True, **options: Any
    ) -> None:
        self.path = Path(path)
        self.skip_bad = skip_bad
        self.validate = validate
        self.skipped: Counter = Counter()
        self.options = options
        if options:
            unknown = ", ".join(sorted(options))
            raise TypeError(f"{self.name} reader: unknown option(s) {unknown}")
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file or folder")

    # ---------------------------------------------------------------- subclass API
    def _items(self) -> Iterator[ReaderItem]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Provenance: the options that define what was read (stored in the store metadata)."""
        return {"format": self.name, "path": str(self.path)}

    #: units of graph-level targets this reader produces, name → unit string
    def target_units(self) -> dict[str, str]:
        return {}

    # ---------------------------------------------------------------- helpers for subclasses
    def bad(self, reason: str, message: str) -> None:
        """Report a bad record: raise `DataFormatError`, or count it when skipping bad input."""
        if self.skip_bad:
            self.skipped[reason] += 1
            return
        raise DataFormatError(message)

    def skip(self, reason: str, count: int = 1) -> None:
        """Count records left out on purpose (documented, not errors)."""
        if count:
            self.skipped[reason] += count

    # ---------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[ReaderItem]:
        for item in self._items():
            if self.validate:
                try:
                    item.record.validate()
                except InvalidStructureError as exc:
                    self.bad("invalid_structure", f"{self.path}: {exc}")
                    continue
            yield item

    def records(self) -> Iterator[AtomsRecord]:
        """Only the records (splits dropped)."""
        for item in self:
            yield item.record


def rs42_permutation(n: int, seed: int = 42) -> np.ndarray:
    """JMP's split permutation: ``np.random.RandomState(seed).shuffle(np.arange(n))``."""
    perm = np.arange(n)
    np.random.RandomState(seed).shuffle(perm)
    return perm


def split_labels(
    n: int, sizes: list[tuple[str, int]], rest: str | None, seed: int = 42
) -> np.ndarray:
    """Label frames by consecutive chunks of the seeded permutation.

    ``sizes`` = [(name, count), ...] taken in order from the permutation, ``rest`` names the
    remaining frames. Returns an object array (n,) of split names (None where unassigned).
    """
    perm = rs42_permutation(n, seed)
    labels = np.full(n, rest, dtype=object)
    start = 0
    for name, count in sizes:
        if count < 0 or start + count > n:
            raise ValueError(f"split sizes {sizes} do not fit {n} frames")
        labels[perm[start : start + count]] = name
        start += count
    return labels


def require(group, key: str, where: str):
    """``group[key]`` or a `DataFormatError` naming ``where`` and the missing key."""
    try:
        return group[key]
    except KeyError:
        raise DataFormatError(f"{where}: missing key {key!r}") from None


def check_shape(array: np.ndarray, shape: tuple, what: str, where: str) -> np.ndarray:
    """Check ``array.shape`` against ``shape`` (``None`` = any size); raise naming the record."""
    if len(array.shape) != len(shape) or any(
        s is not None and a != s for a, s in zip(array.shape, shape)
    ):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise DataFormatError(f"{where}: {what} has shape {tuple(array.shape)}, expected {want}")
    return array


def symbol_to_z(symbol: str, where: str) -> int:
    """Atomic number of an element symbol; `DataFormatError` naming the record if unknown."""
    from ase.data import atomic_numbers

    z = atomic_numbers.get(str(symbol).strip())
    if z is None or z == 0:
        raise DataFormatError(f"{where}: unknown element symbol {symbol!r}")
    return int(z)
