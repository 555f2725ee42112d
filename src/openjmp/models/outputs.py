"""The one output path: backbone output + heads -> energy, forces, stress, properties.

Every producer of energies, forces and stress (pre-training, fine-tuning, replay, head transfer,
evaluation, :class:`openjmp.inference.Predictor` and through it ``openjmp predict``, the ASE
calculator, md and relax) goes through :func:`compute_outputs` (or, for pre-training's per-task
heads, :func:`routed_energy_and_direct_forces`) and converts to physical units with
:func:`to_physical` / :func:`per_atom_energies`.

Shapes: B structures, N atoms, E edges of the main graph; ``batch`` (N,) is the structure index
of each atom. Conventions:

* energy (B,): per-atom head output (N,) on ``x_E`` reduced per structure (``sum`` / ``mean`` /
  ``max``), in *model units* (normalised); physical energy (eV) =
  ``energy * std + mean + Σ_i ref[Z_i]`` (:func:`to_physical`, float64);
* forces (N, 3): ``direct`` = Σ over edges into each atom of force_head(x_F) · V_st (unit edge
  vector), times ``force_scale``; ``gradient`` = −d(energy · energy_scale)/dx (conservative).
  With ``energy_scale = energy_std`` / ``force_scale = force_std`` they are in eV/Å;
* stress (B, 3, 3): (1/V) dE/dε where positions and cell are both multiplied on the right by
  (I + sym ε) (:func:`apply_strain`), E = energy · energy_scale; this is ASE's sign
  (``atoms.get_stress()``: positive = tensile), eV/Å³ for eV energies; V = |det cell| (floored at
  the dtype's tiny); rows of structures that are not fully periodic are NaN when ``periodic`` is
  given;
* properties (B,): graph-level readouts (:func:`openjmp.models.heads.structure_readout`) of
  scalar heads, or logits of classification heads, in model units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from openjmp.models.heads import direct_forces, energy_from_atoms, structure_readout

FORCE_MODES = ("gradient", "direct")


# ------------------------------------------------------------------------------- specs


@dataclass
class EnergySpec:
    """One energy head and how to turn it into forces / stress.

    ``head``: per-atom MLP on x_E (N, A) -> (N, 1); ``force_head``: per-edge MLP on x_F (E, A_e)
    -> (E, 1) (``direct`` forces only); ``forces``: ``"gradient"``, ``"direct"`` or None (no
    forces); ``reduction``: sum / mean / max; ``energy_scale``: factor on the model-unit energy
    before differentiating (energy_std -> eV/Å, eV/Å³); ``force_scale``: factor on direct forces
    (force_std -> eV/Å)."""

    head: nn.Module
    force_head: nn.Module | None = None
    forces: str | None = "gradient"
    reduction: str = "sum"
    energy_scale: float = 1.0
    force_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.forces not in (*FORCE_MODES, None):
            raise ValueError(f"forces must be 'gradient', 'direct' or None, got {self.forces!r}")
        if self.forces == "direct" and self.force_head is None:
            raise ValueError("direct forces need a force head")


@dataclass
class PropertySpec:
    """A graph-level head: per-atom MLP on x_E, ``reduction`` sum / mean / max / spatial_extent;
    ``dropout`` on x_E before the head (classification heads while training)."""

    name: str
    head: nn.Module
    reduction: str = "sum"
    dropout: float = 0.0


@dataclass
class StrainedInputs:
    """Geometry fed to the backbone: ``pos`` (N, 3) is the leaf forces are taken against,
    ``pos_in`` / ``cell_in`` are pos / cell strained by (I + sym eps) when ``eps`` (B, 3, 3)
    is set, ``cell`` (B, 3, 3) the unstrained cell (for the volume)."""

    pos: torch.Tensor
    pos_in: torch.Tensor
    cell: torch.Tensor
    cell_in: torch.Tensor
    eps: torch.Tensor | None = None


@dataclass
class Outputs:
    """Outputs of one backbone pass (see the module docstring for units)."""

    backbone: Any
    energy: torch.Tensor | None = None  # (B,) model units
    energy_per_atom: torch.Tensor | None = None  # (N,) model units (head output per atom)
    forces: torch.Tensor | None = None  # (N, 3)
    dE_dstrain: torch.Tensor | None = None  # (B, 3, 3), energy_scale units
    stress: torch.Tensor | None = None  # (B, 3, 3), energy_scale units / Å³
    properties: dict[str, torch.Tensor] = field(default_factory=dict)  # (B,) model units


# ------------------------------------------------------------------------------- geometry


def apply_strain(pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Strained geometry for stress: returns (pos', cell', eps) with eps (B, 3, 3) zeros that
    require grad, pos' = pos (I + sym eps) per structure and cell' = cell (I + sym eps)."""
    num_structures = cell.shape[0]
    eps = torch.zeros((num_structures, 3, 3), dtype=pos.dtype, device=pos.device,
                      requires_grad=True)
    deform = torch.eye(3, dtype=pos.dtype, device=pos.device) + 0.5 * (eps + eps.transpose(1, 2))
    pos_s = torch.bmm(pos.unsqueeze(1), deform[batch]).squeeze(1)
    return pos_s, torch.bmm(cell, deform), eps


def cell_volume(cell: torch.Tensor) -> torch.Tensor:
    """|det cell| per structure: (B, 3, 3) -> (B,), Å³."""
    return torch.linalg.det(cell).abs()


def prepare_inputs(pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor,
                   gradient: bool = False, stress: bool = False) -> StrainedInputs:
    """Inputs of the backbone: with ``gradient`` or ``stress`` a detached copy of ``pos`` that
    requires grad; with ``stress`` also the strain eps (:func:`apply_strain`)."""
    if cell.dim() == 2:
        cell = cell.unsqueeze(0)
    if not (gradient or stress):
        return StrainedInputs(pos, pos, cell, cell)
    pos = pos.detach().requires_grad_(True)
    if not stress:
        return StrainedInputs(pos, pos, cell, cell)
    pos_in, cell_in, eps = apply_strain(pos, cell, batch)
    return StrainedInputs(pos, pos_in, cell, cell_in, eps)


def strain_stress(dE_deps: torch.Tensor, cell: torch.Tensor,
                  periodic: torch.Tensor | None = None) -> torch.Tensor:
    """Stress (B, 3, 3) = dE/dε / V (V = |det cell| floored at the dtype's tiny); rows where
    ``periodic`` (B,) bool is False are NaN."""
    vol = cell_volume(cell.detach())
    s = dE_deps / vol.clamp_min(torch.finfo(vol.dtype).tiny)[:, None, None]
    if periodic is not None:
        s = torch.where(periodic.to(s.device)[:, None, None], s, torch.full_like(s, float("nan")))
    return s


def gradient_outputs(energy: torch.Tensor, inputs: StrainedInputs, forces: bool = True,
                     periodic: torch.Tensor | None = None, create_graph: bool = False,
                     retain_graph: bool | None = None
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(forces −dE/dpos (N, 3) or None, dE/dε (B, 3, 3) or None, stress or None) of the already
    scaled energy (B,) that depends on ``inputs.pos`` (and ``inputs.eps``)."""
    wanted = ([inputs.pos] if forces else []) + ([inputs.eps] if inputs.eps is not None else [])
    if not wanted:
        return None, None, None
    if energy.requires_grad:
        grads = list(torch.autograd.grad(energy.sum(), wanted, create_graph=create_graph,
                                         retain_graph=retain_graph, allow_unused=True))
    else:  # no edge anywhere (isolated atoms): the energy does not depend on the geometry
        grads = [None] * len(wanted)
    f = None
    if forces:
        g = grads.pop(0)
        f = -g if g is not None else torch.zeros_like(inputs.pos)
    if inputs.eps is None:
        return f, None, None
    de = grads[0] if grads[0] is not None else torch.zeros_like(inputs.eps)
    return f, de, strain_stress(de, inputs.cell, periodic)


# ------------------------------------------------------------------------------- heads


def property_outputs(specs: Sequence[PropertySpec], x_E: torch.Tensor, batch: torch.Tensor,
                     num_structures: int, pos: torch.Tensor | None = None,
                     atomic_numbers: torch.Tensor | None = None, training: bool = False
                     ) -> dict[str, torch.Tensor]:
    """name -> (B,) readout of each graph-level head on x_E (N, A); ``pos`` (N, 3) Å and
    ``atomic_numbers`` (N,) for the spatial_extent readout."""
    out = {}
    for p in specs:
        x = F.dropout(x_E, p.dropout, training=training) if p.dropout > 0 else x_E
        out[p.name] = structure_readout(p.head(x).squeeze(-1), batch, num_structures, p.reduction,
                                        pos, atomic_numbers)
    return out


def compute_outputs(backbone: Callable[..., Any], atomic_numbers: torch.Tensor, pos: torch.Tensor,
                    cell: torch.Tensor, batch: torch.Tensor, graphs, num_structures: int,
                    energy: EnergySpec | None = None, properties: Sequence[PropertySpec] = (),
                    stress: bool = False, periodic: torch.Tensor | None = None,
                    create_graph: bool = False, training: bool = False) -> Outputs:
    """One backbone pass and every requested head.

    ``backbone(atomic_numbers (N,), pos (N, 3), cell (B, 3, 3), batch (N,), graphs, B)`` returns
    a :class:`~openjmp.models.gemnet_oc.backbone.BackboneOutput` (a ``JMPModel`` or its
    compiled version). ``stress`` (needs ``energy``): dE/dε and stress; ``periodic`` (B,) bool
    marks structures whose stress is defined (others NaN; None: all); ``create_graph``: keep the
    graph of the force / stress derivatives (force and stress losses); ``training``: dropout of
    property heads. Grad mode is the caller's (wrap in ``torch.enable_grad()`` for gradient
    forces at inference)."""
    stress = bool(stress and energy is not None)
    grad_forces = energy is not None and energy.forces == "gradient"
    inputs = prepare_inputs(pos, cell, batch, grad_forces, stress)
    out = backbone(atomic_numbers, inputs.pos_in, inputs.cell_in, batch, graphs, num_structures)
    result = Outputs(out)
    if energy is not None:
        e, e_atoms = energy_from_atoms(energy.head, out.x_E, batch, num_structures, energy.reduction)
        result.energy, result.energy_per_atom = e, e_atoms
        if grad_forces or stress:
            result.forces, result.dE_dstrain, result.stress = gradient_outputs(
                e.sum() * energy.energy_scale, inputs, grad_forces, periodic, create_graph)
        if energy.forces == "direct":
            f = direct_forces(energy.force_head, out.x_F, out.V_st, out.idx_t, atomic_numbers.shape[0])
            result.forces = f * energy.force_scale
    if properties:
        result.properties = property_outputs(properties, out.x_E, batch, num_structures, pos,
                                             atomic_numbers, training)
    return result


def routed_energy_and_direct_forces(energy_heads: Sequence[nn.Module], force_heads: Sequence[nn.Module],
                                    out, batch: torch.Tensor, task_of_atom: torch.Tensor,
                                    num_structures: int, dtype: torch.dtype
                                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-training outputs of a mixed batch: each atom (and each edge, by its target atom) goes
    through the energy / direct-force head of its task (``task_of_atom`` (N,)). Returns energy
    (B,) and forces (N, 3) in model units, accumulated in ``dtype`` (float32 under half-precision
    autocast). Every head runs (on possibly zero atoms), so that all parameters take part in
    backward on every process (DDP)."""
    num_atoms = batch.shape[0]
    energy = out.x_E.new_zeros(num_structures, dtype=dtype)
    forces = out.x_F.new_zeros((num_atoms, 3), dtype=dtype)
    for t, (e_head, f_head) in enumerate(zip(energy_heads, force_heads)):
        atoms = task_of_atom == t
        e_atoms = e_head(out.x_E[atoms]).squeeze(-1)
        energy = energy.index_add(0, batch[atoms], e_atoms.to(dtype))
        edges = atoms[out.idx_t]
        scalar = f_head(out.x_F[edges])
        forces = forces.index_add(0, out.idx_t[edges], (scalar * out.V_st[edges]).to(dtype))
    return energy, forces


def grad_context(needed: bool):
    """``torch.enable_grad()`` when derivatives are needed, else ``torch.no_grad()``."""
    return torch.enable_grad() if needed else torch.no_grad()


# ------------------------------------------------------------------------------- units


@dataclass
class Scaling:
    """Model units -> physical units of one head (from a model file's normalisation entry):
    ``value · std + mean + Σ_i ref[Z_i]`` (energy heads: eV; scalar heads: the target's unit),
    direct forces × ``force_std``; classification heads: ``sigmoid(value)``."""

    std: float = 1.0
    mean: float = 0.0
    force_std: float = 1.0
    linear_reference: torch.Tensor | None = None  # (120,) float64
    kind: str = "energy"  # or "scalar" / "classification"

    @classmethod
    def from_dict(cls, norm: dict | None, kind: str = "energy") -> Scaling:
        """Energy heads: ``energy_std`` / ``energy_mean`` / ``force_std``; scalar heads: ``std`` /
        ``mean``; both: ``linear_reference`` (120 floats or absent)."""
        n, e = dict(norm or {}), "energy_" if kind in ("energy", "energy_forces", "pretrain") else ""
        ref = n.get("linear_reference")
        return cls(float(n.get(f"{e}std", 1.0)), float(n.get(f"{e}mean", 0.0)), float(n.get("force_std", 1.0)),
                   None if ref is None else torch.as_tensor(ref, dtype=torch.float64).reshape(-1), kind)

    def physical(self, value: torch.Tensor, atomic_numbers: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """(B,) model units -> (B,) float64 physical (probabilities for classification)."""
        if self.kind == "classification":
            return torch.sigmoid(value.double())
        ref = reference_energy(self.linear_reference, atomic_numbers, batch, value.shape[0])
        return to_physical(value, self.std, self.mean, ref)

    def per_atom(self, energy_per_atom: torch.Tensor, reduction: str, atomic_numbers: torch.Tensor,
                 batch: torch.Tensor, natoms: torch.Tensor) -> torch.Tensor | None:
        """Physical per-atom energies (N,) (:func:`per_atom_energies`)."""
        return per_atom_energies(energy_per_atom, reduction, atomic_numbers, batch, natoms, self.std,
                                 self.mean, self.linear_reference)


def reference_energy(linear_reference, atomic_numbers: torch.Tensor, batch: torch.Tensor,
                     num_structures: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_i ref[Z_i] per structure (B,) float64 on the device of ``atomic_numbers``.

    ``linear_reference``: (120,) sequence / tensor (eV per element, index = Z), or None (zeros);
    or a (T, 120) table with ``rows`` (N,) picking each atom's row (pre-training tasks)."""
    out = torch.zeros(num_structures, dtype=torch.float64, device=atomic_numbers.device)
    if linear_reference is None:
        return out
    ref = torch.as_tensor(linear_reference, dtype=torch.float64, device=atomic_numbers.device)
    per_atom = ref[atomic_numbers] if rows is None else ref[rows, atomic_numbers]
    return out.index_add_(0, batch, per_atom)


def to_physical(value: torch.Tensor, std=1.0, mean=0.0, reference: torch.Tensor | None = None
                ) -> torch.Tensor:
    """value (B,) in model units -> ``value · std + mean (+ reference)`` float64 (std / mean:
    floats or (B,) tensors; reference (B,) from :func:`reference_energy`)."""
    out = value.double() * std + mean
    return out if reference is None else out + reference


def from_physical(value: torch.Tensor, std=1.0, mean=0.0, reference: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """Inverse of :func:`to_physical`: ``(value - reference - mean) / std``, float64."""
    out = value.double()
    if reference is not None:
        out = out - reference
    return (out - mean) / std


def per_atom_energies(energy_per_atom: torch.Tensor, reduction: str, atomic_numbers: torch.Tensor,
                      batch: torch.Tensor, natoms: torch.Tensor, std: float = 1.0,
                      mean: float = 0.0, linear_reference=None) -> torch.Tensor | None:
    """Physical per-atom energies (N,) float64 that sum per structure to the :func:`to_physical`
    energy: ``e_i · std + mean / n + ref[Z_i]`` (``sum`` readout; ``mean``: e_i / n · std + ...);
    None for the ``max`` readout (not a sum over atoms)."""
    if reduction not in ("sum", "mean"):
        return None
    n = natoms.to(device=batch.device, dtype=torch.float64)[batch]
    e = energy_per_atom.double()
    if reduction == "mean":
        e = e / n
    out = e * std + mean / n
    if linear_reference is not None:
        ref = torch.as_tensor(linear_reference, dtype=torch.float64, device=atomic_numbers.device)
        out = out + ref[atomic_numbers]
    return out


__all__ = [
    "FORCE_MODES", "EnergySpec", "Outputs", "PropertySpec", "Scaling", "StrainedInputs", "apply_strain",
    "cell_volume", "compute_outputs", "from_physical", "gradient_outputs", "grad_context",
    "per_atom_energies", "prepare_inputs", "property_outputs", "reference_energy",
    "routed_energy_and_direct_forces", "strain_stress", "to_physical",
]
