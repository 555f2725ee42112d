"""Output heads on top of the GemNet-OC backbone and their per-structure readouts.

MLP heads are ``nn.Sequential(Linear, ScaledSiLU, Linear, ..., Linear(-> out))`` with
``num_mlps`` linear layers (state-dict indices 0, 2, 4, ...), as in JMP:

* pre-training energy / force heads and the fine-tuning force head: bias on the hidden
  linears, no bias on the last one (``hidden_bias=True, last_bias=False``);
* fine-tuning energy head: no bias anywhere (``hidden_bias=False``).

Energy: per-atom head output reduced per structure (sum; mean/max available).
Direct forces: per-edge scalar times the unit edge vector ``V_st``, summed onto the edge target.
Gradient forces, stress, normalisation to physical units and the whole output path (which
every caller uses) are in :mod:`openjmp.models.outputs`.
"""

from __future__ import annotations

import torch
from torch import nn

from openjmp.models.gemnet_oc.layers import ScaledSiLU


def mlp_head(in_features: int, num_mlps: int = 5, out_features: int = 1,
             hidden_bias: bool = True, last_bias: bool = False) -> nn.Sequential:
    """``num_mlps`` linears (in -> in ... -> out) with ScaledSiLU between them."""
    if num_mlps < 1:
        raise ValueError(f"num_mlps must be >= 1, got {num_mlps}")
    layers: list[nn.Module] = []
    for _ in range(num_mlps - 1):
        layers += [nn.Linear(in_features, in_features, bias=hidden_bias), ScaledSiLU()]
    layers.append(nn.Linear(in_features, out_features, bias=last_bias))
    return nn.Sequential(*layers)


def reduce_per_structure(values: torch.Tensor, batch: torch.Tensor, num_structures: int,
                         reduction: str = "sum") -> torch.Tensor:
    """(N, *f) per-atom values -> (B, *f) per structure (sum, mean or max)."""
    out_shape = (num_structures,) + tuple(values.shape[1:])
    if reduction == "sum":
        return values.new_zeros(out_shape).index_add_(0, batch, values)
    if reduction == "mean":
        total = values.new_zeros(out_shape).index_add_(0, batch, values)
        counts = torch.bincount(batch, minlength=num_structures).to(values.dtype)
        return total / counts.reshape((-1,) + (1,) * (values.dim() - 1)).clamp(min=1)
    if reduction == "max":
        idx = batch.reshape((-1,) + (1,) * (values.dim() - 1)).expand_as(values)
        init = values.new_full(out_shape, float("-inf"))
        return init.scatter_reduce(0, idx, values, reduce="amax", include_self=True)
    raise ValueError(f"unknown reduction {reduction!r} (sum, mean, max)")


def spatial_extent(values: torch.Tensor, pos: torch.Tensor, atomic_numbers: torch.Tensor,
                   batch: torch.Tensor, num_structures: int) -> torch.Tensor:
    """Mass-weighted spatial-extent readout (JMP's head for QM9's <R²>): per structure
    Σ_i q_i |r_i - r_cm|², with q_i = ``values`` (N,) the per-atom head output, r_i = ``pos``
    (N, 3) Å and r_cm the centre of mass (ASE atomic masses of ``atomic_numbers`` (N,)).
    Returns (B,) in units of q × Å²; invariant under translations and rotations."""
    from ase.data import atomic_masses

    masses = torch.as_tensor(atomic_masses, dtype=pos.dtype, device=pos.device)[atomic_numbers]
    total = pos.new_zeros(num_structures).index_add_(0, batch, masses)
    centre = pos.new_zeros((num_structures, 3)).index_add_(0, batch, masses[:, None] * pos)
    centre = centre / total.clamp_min(torch.finfo(pos.dtype).tiny)[:, None]
    r2 = (pos - centre[batch]).square().sum(-1)
    return values.new_zeros(num_structures).index_add_(0, batch, values * r2.to(values.dtype))


def structure_readout(values: torch.Tensor, batch: torch.Tensor, num_structures: int, reduction: str,
                      pos: torch.Tensor | None = None, atomic_numbers: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """(N,) per-atom head outputs -> (B,): ``sum`` / ``mean`` / ``max`` (`reduce_per_structure`)
    or ``spatial_extent`` (`spatial_extent`; needs ``pos`` and ``atomic_numbers``)."""
    if reduction == "spatial_extent":
        if pos is None or atomic_numbers is None:
            raise ValueError("the spatial_extent readout needs positions and atomic numbers")
        return spatial_extent(values, pos, atomic_numbers, batch, num_structures)
    return reduce_per_structure(values, batch, num_structures, reduction)


def energy_from_atoms(head: nn.Module, x_E: torch.Tensor, batch: torch.Tensor,
                      num_structures: int, reduction: str = "sum"
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy per structure (B,) and per atom (N,) from backbone atom features (N, A)."""
    per_atom = head(x_E).squeeze(-1)
    return reduce_per_structure(per_atom, batch, num_structures, reduction), per_atom


def direct_forces(head: nn.Module, x_F: torch.Tensor, V_st: torch.Tensor, idx_t: torch.Tensor,
                  num_atoms: int) -> torch.Tensor:
    """Forces (N, 3): sum over edges into each atom of head(x_F) * V_st."""
    scalar = head(x_F)  # (E, 1)
    return V_st.new_zeros((num_atoms, 3)).index_add_(0, idx_t, scalar * V_st)
