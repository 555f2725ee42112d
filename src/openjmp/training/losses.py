"""Losses of the JMP recipe (pure functions).

* Energy: L1 on the (normalised) total energy per structure.
* Forces: per-atom L2 distance ``|F_pred - F_true|`` (not squared), reduced **structure-wise**:
  mean over each structure's atoms first, then mean over structures, so that a 60-atom slab and
  a 3-atom molecule weigh the same. ``reduction="atom"`` (mean over all atoms of the batch) is the
  ablation the paper compares against.
* Unitary scalarisation: the total loss is the plain weighted sum of all task losses.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

REDUCTIONS = ("structure", "atom")


def segment_mean(values: torch.Tensor, segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Mean of ``values`` (N, ...) per segment id in ``segment`` (N,) -> (num_segments, ...).

    Empty segments give 0.
    """
    sums = torch.zeros((num_segments, *values.shape[1:]), dtype=values.dtype, device=values.device)
    sums.index_add_(0, segment, values)
    counts = torch.bincount(segment, minlength=num_segments).clamp(min=1).to(values.dtype)
    return sums / counts.view(-1, *([1] * (values.dim() - 1)))


def energy_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-structure absolute energy error (B,)."""
    return (pred - target).abs()


def force_l2_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-atom Euclidean distance between force vectors (N,)."""
    return torch.linalg.vector_norm(pred - target, dim=-1)


def reduce_atoms(
    per_atom: torch.Tensor,
    batch: torch.Tensor,
    num_structures: int,
    reduction: str = "structure",
    structure_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce a per-atom loss (N,) to a scalar.

    Args:
        per_atom: (N,) loss per atom.
        batch: (N,) structure index per atom.
        num_structures: B.
        reduction: "structure" (mean per structure, then over structures) or "atom".
        structure_mask: optional (B,) bool, structures that take part (others are ignored).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    if structure_mask is None:
        structure_mask = torch.ones(num_structures, dtype=torch.bool, device=per_atom.device)
    if not bool(structure_mask.any()):
        return per_atom.sum() * 0.0
    if reduction == "structure":
        per_structure = segment_mean(per_atom, batch, num_structures)
        return per_structure[structure_mask].mean()
    atom_mask = structure_mask[batch]
    return per_atom[atom_mask].mean()


def weighted_sum(losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """Unitary scalarisation: sum_k w_k * L_k over the losses present."""
    missing = set(losses) - set(weights)
    if missing:
        raise KeyError(f"no loss weight for {sorted(missing)}")
    total = None
    for name, value in losses.items():
        term = weights[name] * value
        total = term if total is None else total + term
    if total is None:
        raise ValueError("no losses to combine")
    return total
