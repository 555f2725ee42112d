"""Per-dataset target normalisation: linear energy references, then scaling to unit scale.

JMP's recipe per pre-training dataset: subtract a per-element linear reference fitted by least
squares on the element counts of the training split, then normalise the referenced energy with
(mean, std) and the forces with their std (mean 0, so directions are kept). Predictions are
de-normalised back to eV / eV/Å for metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from openjmp.models.outputs import from_physical, reference_energy, to_physical

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
        return reference_energy(self.linear_reference, atomic_numbers, batch, num_structures)

    def normalize_energy(self, energy, atomic_numbers, batch):
        """(E - Σ ref - mean) / std, float64 (:func:`openjmp.models.outputs.from_physical`)."""
        ref = self.reference_energy(atomic_numbers, batch, energy.shape[0])
        return from_physical(energy, self.energy_std, self.energy_mean, ref)

    def denormalize_energy(self, energy_norm, atomic_numbers, batch):
        """e · std + mean + Σ ref, float64 (:func:`openjmp.models.outputs.to_physical`)."""
        ref = self.reference_energy(atomic_numbers, batch, energy_norm.shape[0])
        return to_physical(energy_norm, self.energy_std, self.energy_mean, ref)

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


# ============================================================================ fixed constants
def linear_reference_array(values, where: str = "linear_reference") -> np.ndarray:
    """Per-element reference energies given by a user → (NUM_ELEMENTS,) eV per atom.

    Args:
        values: a list of exactly NUM_ELEMENTS numbers indexed by atomic number (index 0
            unused), or a mapping element symbol ("Cu") or atomic number (29, "29") → eV per
            atom (elements not named get 0).
        where: named in error messages (config key or file).

    Raises:
        ValueError: wrong length, unknown element symbol, atomic number out of range, a value
            that is not a finite number.
    """
    from ase.data import atomic_numbers as symbol_to_z

    out = np.zeros(NUM_ELEMENTS, dtype=np.float64)
    if isinstance(values, dict):
        for key, value in values.items():
            text = str(key).strip()
            if text.lstrip("-").isdigit():
                z = int(text)
                if not 1 <= z < NUM_ELEMENTS:
                    raise ValueError(f"{where}: atomic number {z} outside 1..{NUM_ELEMENTS - 1}")
            elif text in symbol_to_z and text != "X":
                z = symbol_to_z[text]
            else:
                raise ValueError(f"{where}: unknown element symbol {text!r}")
            out[z] = _finite_number(value, f"{where}[{text}]")
        return out
    if isinstance(values, list | tuple | np.ndarray):
        if len(values) != NUM_ELEMENTS:
            raise ValueError(
                f"{where}: {len(values)} values; expected {NUM_ELEMENTS} (eV per atom indexed by "
                f"atomic number, index 0 unused) or a mapping element symbol → eV"
            )
        for z, value in enumerate(values):
            out[z] = _finite_number(value, f"{where}[{z}]")
        return out
    raise ValueError(f"{where}: expected a list of {NUM_ELEMENTS} numbers or a mapping element → eV, got {type(values).__name__}")


def _finite_number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {value!r} is not a number")
    if not np.isfinite(value):
        raise ValueError(f"{where}: {value} is not finite")
    return float(value)


def load_linear_reference(value, where: str = "linear_reference") -> np.ndarray:
    """`linear_reference_array` of a list / mapping, or of the JSON file named by a string
    (its content: the list, the mapping, or ``{"linear_reference": list or mapping}``)."""
    if not isinstance(value, str | Path):
        return linear_reference_array(value, where)
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{where}: linear reference file {path} does not exist")
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{where}: {path} is not a readable JSON file ({exc})") from None
    if isinstance(content, dict) and "linear_reference" in content:
        content = content["linear_reference"]
    return linear_reference_array(content, f"{path}")


# ============================================================================ streamed fitting
def fit_normalizer_from_records(
    records: Iterable,
    use_linear_reference: bool = True,
    linear_reference: np.ndarray | None = None,
    energy_mean: float | None = None,
    energy_std: float | None = None,
    force_std: float | None = None,
) -> DatasetNormalizer:
    """A `DatasetNormalizer` with the given constants fixed and the others fitted on ``records``
    (an iterable of `AtomsRecord`, e.g. a streamed subsample; read once, forces not kept).

    Args:
        use_linear_reference: False → no reference (zeros).
        linear_reference: (NUM_ELEMENTS,) eV per atom to use instead of fitting one.
        energy_mean, energy_std: eV, of the referenced energy; force_std: eV/Å (RMS of the
            force components). None → fitted as in `fit_normalizer`.
    """
    need_energy = energy_mean is None or energy_std is None or (use_linear_reference and linear_reference is None)
    need_forces = force_std is None
    zs, energies = [], []
    f_sq, f_count = 0.0, 0
    if need_energy or need_forces:
        for r in records:
            if need_energy:
                zs.append(np.asarray(r.atomic_numbers))
                energies.append(float(r.energy))
            if need_forces and r.forces is not None:
                f = np.asarray(r.forces, dtype=np.float64)
                f_sq += float(np.sum(f * f))
                f_count += f.size
    if need_energy:
        energies_arr = np.asarray(energies, dtype=np.float64)
        counts = element_count_matrix(zs)
        if not use_linear_reference:
            coeff = np.zeros(NUM_ELEMENTS)
        elif linear_reference is None:
            coeff = fit_linear_reference(counts, energies_arr)
        else:
            coeff = np.asarray(linear_reference, dtype=np.float64)
        residual = energies_arr - counts @ coeff
        if energy_mean is None:
            energy_mean = float(residual.mean()) if residual.size else 0.0
        if energy_std is None:
            fitted = float(residual.std()) if residual.size > 1 else 1.0
            energy_std = fitted if fitted > 1e-12 else 1.0
    else:
        coeff = np.zeros(NUM_ELEMENTS) if not use_linear_reference else np.asarray(linear_reference, dtype=np.float64)
    if force_std is None:
        fitted = float(np.sqrt(f_sq / f_count)) if f_count else 1.0
        force_std = fitted if fitted > 1e-12 else 1.0
    return DatasetNormalizer(
        linear_reference=coeff.tolist(), energy_mean=float(energy_mean),
        energy_std=float(energy_std), force_std=float(force_std),
    )
