"""Collate `AtomsRecord`s into a `Batch` of concatenated tensors.

Layout (B structures, N atoms in total):
    atomic_numbers (N,) long; pos (N, 3); cell (B, 3, 3); pbc (B, 3) bool; natoms (B,) long;
    batch (N,) long (structure index of every atom); tags (N,) long (2 where a record has none,
    JMP's convention for molecules and bulk); fixed (N,) bool;
    energy (B,) (NaN where a record has none); forces (N, 3) (NaN where missing);
    stress (B, 3, 3) (NaN where missing); targets: name -> (B,) or (B, k) (NaN where missing).
Float tensors use ``dtype`` (float64 by default: records are float64; models cast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from openjmp.data.record import AtomsRecord

#: tag given to atoms of records without tags (JMP: molecules and bulk are all "adsorbate")
DEFAULT_TAG = 2


@dataclass
class Batch:
    atomic_numbers: torch.Tensor
    pos: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    natoms: torch.Tensor
    batch: torch.Tensor
    tags: torch.Tensor
    fixed: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor
    stress: torch.Tensor
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    dataset: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    #: extra tensors attached by transforms or tasks (e.g. ``dataset_index``, graph arrays)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_structures(self) -> int:
        return int(self.natoms.shape[0])

    @property
    def num_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    def to(self, device=None, dtype: torch.dtype | None = None) -> Batch:
        """Move to ``device``; cast floating tensors to ``dtype`` (integers and bools stay)."""

        def move(x):
            if isinstance(x, torch.Tensor):
                if dtype is not None and x.is_floating_point():
                    return x.to(device=device, dtype=dtype)
                return x.to(device=device)
            if isinstance(x, dict):
                return {k: move(v) for k, v in x.items()}
            return x

        return replace(self, **{f.name: move(getattr(self, f.name)) for f in fields(self)})


def _nan_filled(shape, dtype):
    return torch.full(shape, float("nan"), dtype=dtype)


def collate(records: Sequence[AtomsRecord], dtype: torch.dtype = torch.float64) -> Batch:
    """Concatenate records into one `Batch` (see module docstring for the layout)."""
    if len(records) == 0:
        raise ValueError("cannot collate an empty list of records")
    natoms = np.array([r.natoms for r in records], dtype=np.int64)
    total = int(natoms.sum())
    energy = _nan_filled((len(records),), dtype)
    forces = _nan_filled((total, 3), dtype)
    stress = _nan_filled((len(records), 3, 3), dtype)
    tags = np.full(total, DEFAULT_TAG, dtype=np.int64)
    fixed = np.zeros(total, dtype=bool)
    target_names = sorted({name for r in records for name in r.targets})
    target_values: dict[str, list] = {name: [] for name in target_names}
    start = 0
    for b, r in enumerate(records):
        stop = start + r.natoms
        if r.energy is not None:
            energy[b] = r.energy
        if r.forces is not None:
            forces[start:stop] = torch.from_numpy(r.forces)
        if r.stress is not None:
            stress[b] = torch.from_numpy(r.stress)
        if r.tags is not None:
            tags[start:stop] = r.tags
        if r.fixed is not None:
            fixed[start:stop] = r.fixed
        for name in target_names:
            target_values[name].append(r.targets.get(name))
        start = stop
    targets = {name: _stack_target(name, values, dtype) for name, values in target_values.items()}
    return Batch(
        atomic_numbers=torch.from_numpy(np.concatenate([r.atomic_numbers for r in records])),
        pos=torch.from_numpy(np.concatenate([r.positions for r in records])).to(dtype),
        cell=torch.from_numpy(np.stack([r.cell for r in records])).to(dtype),
        pbc=torch.from_numpy(np.stack([r.pbc for r in records])),
        natoms=torch.from_numpy(natoms),
        batch=torch.repeat_interleave(torch.arange(len(records)), torch.from_numpy(natoms)),
        tags=torch.from_numpy(tags),
        fixed=torch.from_numpy(fixed),
        energy=energy,
        forces=forces,
        stress=stress,
        targets=targets,
        dataset=[r.dataset for r in records],
        source=[r.source for r in records],
    )


def _stack_target(name: str, values: list, dtype: torch.dtype) -> torch.Tensor:
    shapes = {np.shape(v) for v in values if v is not None}
    if len(shapes) > 1:
        raise ValueError(f"target {name!r} has inconsistent shapes across records: {sorted(shapes)}")
    shape = shapes.pop() if shapes else ()
    out = _nan_filled((len(values), *shape), dtype)
    for i, v in enumerate(values):
        if v is not None:
            out[i] = torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=dtype)
    return out
