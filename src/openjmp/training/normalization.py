"""Per-dataset target normalisation: linear energy references, then scaling to unit scale.

JMP's recipe per pre-training dataset: subtract a per-element linear reference fitted by least
squares on the element counts of the training split, then normalise the referenced energy with
(mean, std) and the forces with their std (mean 0, so directions are kept). Predictions are
de-normalised back to eV / eV/Å for metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

NUM_ELEMENTS = 120  # index = atomic number (0 unused), as JMP's `coeff[Z]` arrays


def element_count_matrix(atomic_numbers_per_record, num_elements: int = NUM_ELEMENTS) -> np.ndarray:
    """(R, num_elements) counts of each atomic number in each record."""
    out = np.zeros((len(atomic_numbers_per_record), num_elements), dtype=np.float64)
    for i, z in enumerate(atomic_numbers_per_record):
        np.add.at(out[i], np.asarray(z, dtype=np.int64), 1.0)
    return out


def fit_linear_reference(counts: np.ndarray, energies: np.ndarray, rcond: float | None = None) -> np.ndarray:
    """Least-squares per-element energies: argmin_c |counts @ c - energies|².

    Args:
        counts: (R, num_elements) element counts (from `element_count_matrix`).
        energies: (R,) total energies, eV.

    Returns:
        (num_elements,) eV per atom of each element; 0 for elements absent from the data
        (the minimum-norm solution, so absent elements never pick up arbitrary values).
    """
    counts = np.asarray(counts, dtype=np.float64)
    energies = np.asarray(energies, dtype=np.float64)
    if counts.shape[0] != energies.shape[0]:
        raise ValueError(f"{counts.shape[0]} count rows but {energies.shape[0]} energies")
    if counts.shape[0] == 0:
        raise ValueError("cannot fit a linear reference on zero records")
    present = counts.sum(0) > 0
    coeff = np.zeros(counts.shape[1])
    solution, *_ = np.linalg.lstsq(counts[:, present], energies, rcond=rcond)
    coeff[present] = solution
    return coeff


@dataclass
class DatasetNormalizer:
    """Normalisation constants of one dataset (eV, eV/Å).

    normalised energy = (E - sum_i ref[Z_i] - energy_mean) / energy_std
    normalised forces = F / force_std
    """

    linear_reference: list[float] = field(default_factory=lambda: [0.0] * NUM_ELEMENTS)
    energy_mean: float = 0.0
    energy_std: float = 1.0
    force_std: float = 1.0

    def __post_init__(self):
        if self.energy_std <= 0 or self.force_std <= 0:
            raise ValueError(f"standard deviations must be > 0 (energy {self.energy_std}, force {self.force_std})")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DatasetNormalizer:
        return cls(**d)

    def reference_energy(self, atomic_numbers: torch.Tensor, batch: torch.Tensor, num_structures: int) -> torch.Tensor:
        """sum_i ref[Z_i] per structure (B,), eV."""
        ref = torch.as_tensor(self.linear_reference, dtype=torch.float64, device=atomic_numbers.device)
        per_atom = ref[atomic_numbers]
        out = torch.zeros(num_structures, dtype=torch.float64, device=atomic_numbers.device)
        return out.index_add_(0, batch, per_atom)

    def normalize_energy(self, energy, atomic_numbers, batch):
        ref = self.reference_energy(atomic_numbers, batch, energy.shape[0]).to(energy.dtype)
        return (energy - ref - self.energy_mean) / self.energy_std

    def denormalize_energy(self, energy_norm, atomic_numbers, batch):
        ref = self.reference_energy(atomic_numbers, batch, energy_norm.shape[0]).to(energy_norm.dtype)
        return energy_norm * self.energy_std + self.energy_mean + ref

    def normalize_forces(self, forces):
        return forces / self.force_std

    def denormalize_forces(self, forces_norm):
        return forces_norm * self.force_std


def fit_normalizer(atomic_numbers_per_record, energies, forces_per_record=None, use_linear_reference=True) -> DatasetNormalizer:
    """Fit a `DatasetNormalizer` on a training split.

    Args:
        atomic_numbers_per_record: list of (n_i,) arrays.
        energies: (R,) total energies, eV.
        forces_per_record: list of (n_i, 3) arrays, eV/Å, or None.
    """
    energies = np.asarray(energies, dtype=np.float64)
    counts = element_count_matrix(atomic_numbers_per_record)
    coeff = fit_linear_reference(counts, energies) if use_linear_reference else np.zeros(NUM_ELEMENTS)
    residual = energies - counts @ coeff
    energy_std = float(residual.std()) if residual.size > 1 else 1.0
    force_std = 1.0
    if forces_per_record is not None and len(forces_per_record):
        f = np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in forces_per_record])
        force_std = float(np.sqrt(np.mean(f**2))) if f.size else 1.0
    return DatasetNormalizer(
        linear_reference=coeff.tolist(),
        energy_mean=float(residual.mean()),
        energy_std=energy_std if energy_std > 1e-12 else 1.0,
        force_std=force_std if force_std > 1e-12 else 1.0,
    )
