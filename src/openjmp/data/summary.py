"""Summary statistics of a stream of records (used by ``inspect`` commands)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from openjmp.data.record import AtomsRecord


@dataclass
class RunningStats:
    """Streaming count / sum / mean / std / min / max (Chan's parallel update, float64)."""

    count: int = 0
    sum: float = 0.0
    abs_sum: float = 0.0
    _mean: float = 0.0
    _m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def update(self, values) -> None:
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        n_b, mean_b = x.size, float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.count + n_b
        delta = mean_b - self._mean
        self._mean += delta * n_b / n
        self._m2 += m2_b + delta**2 * self.count * n_b / n
        self.count = n
        self.sum += float(x.sum())
        self.abs_sum += float(np.abs(x).sum())
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    def as_dict(self, with_abs_sum: bool = False) -> dict:
        out = {
            "count": self.count,
            "sum": self.sum,
            "mean": self._mean if self.count else None,
            "std": math.sqrt(self._m2 / self.count) if self.count else None,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
        }
        if with_abs_sum:
            out["abs_sum"] = self.abs_sum
        return out


@dataclass
class RecordSummary:
    records: int = 0
    atoms: int = 0
    elements: Counter = field(default_factory=Counter)
    energy: RunningStats = field(default_factory=RunningStats)
    forces: RunningStats = field(default_factory=RunningStats)
    targets: dict[str, RunningStats] = field(default_factory=dict)
    periodic: int = 0
    datasets: Counter = field(default_factory=Counter)
    #: split name -> records (records without a split are not counted)
    splits: Counter = field(default_factory=Counter)
    #: reason -> records a reader left out (filled by the caller from ``reader.skipped``)
    skipped: Counter = field(default_factory=Counter)

    def update(self, record: AtomsRecord, split: str | None = None) -> None:
        self.records += 1
        if split is not None:
            self.splits[split] += 1
        self.atoms += record.natoms
        self.periodic += int(record.is_periodic)
        self.datasets[record.dataset] += 1
        from ase.data import chemical_symbols

        for z, c in zip(*np.unique(record.atomic_numbers, return_counts=True)):
            self.elements[chemical_symbols[int(z)]] += int(c)
        if record.energy is not None:
            self.energy.update([record.energy])
        if record.forces is not None:
            self.forces.update(record.forces)
        for name, value in record.targets.items():
            self.targets.setdefault(name, RunningStats()).update(value)

    def as_dict(self) -> dict:
        return {
            "records": self.records,
            "atoms": self.atoms,
            "periodic_records": self.periodic,
            "elements": dict(sorted(self.elements.items())),
            "energy": self.energy.as_dict(),
            "forces": self.forces.as_dict(with_abs_sum=True),
            "targets": {k: v.as_dict() for k, v in sorted(self.targets.items())},
            "datasets": dict(self.datasets),
            "splits": dict(sorted(self.splits.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }


def summarize(records: Iterable[AtomsRecord]) -> RecordSummary:
    summary = RecordSummary()
    for record in records:
        summary.update(record)
    return summary
