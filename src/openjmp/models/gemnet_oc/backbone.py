"""The GemNet-OC backbone (as JMP configures it), in plain PyTorch.

Input: atom embeddings ``h`` (N, emb_size_atom) (the embedding lives outside the backbone, as in
JMP), positions (N, 3) Å, cells (B, 3, 3) (rows = lattice vectors), the structure index of every
atom, and the four GemNet-OC graphs (:class:`openjmp.data.graphs.goc.GOCGraphs`: edge index +
integer cell offsets per graph, atom indices offset per structure, edges grouped by structure).
Edge vectors/distances are recomputed here from positions and cell
(``openjmp.data.graphs.edge_vectors``), so gradients w.r.t. positions and cell flow (gradient
forces, stress) while the graphs are built once.

Output (:class:`BackboneOutput`): per-atom features ``x_E`` (N, emb_size_atom), per-edge
features ``x_F`` (E, emb_size_edge) on the symmetrised main graph, and that graph's unit
vectors ``V_st`` (E, 3), distances ``D_st`` (E,) Å, ``idx_s``, ``idx_t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import nn

from openjmp.data.graphs.radius import edge_vectors
from openjmp.models.gemnet_oc.bases import Bases
from openjmp.models.gemnet_oc.config import GemNetOCConfig
from openjmp.models.gemnet_oc.indices import (
    QuadrupletIndex,
    TripletIndex,
    inner_index,
    mixed_triplets,
    padded_index,
    quadruplets,
    symmetrize_main,
    triplets,
)
from openjmp.models.gemnet_oc.interaction import InteractionBlock, OutputBlock
from openjmp.models.gemnet_oc.layers import Dense, ResidualLayer


@dataclass
class ModelGraphs:
    """Everything geometric the blocks need (main graph already symmetrised)."""

    main_edge_index: torch.Tensor
    main_cell_offset: torch.Tensor
    main_distance: torch.Tensor
    main_vector: torch.Tensor
    main_num_neighbors: torch.Tensor
    id_swap: torch.Tensor
    a2a_edge_index: torch.Tensor
    a2a_distance: torch.Tensor
    a2a_target_rank: torch.Tensor
    a2ee2a_edge_index: torch.Tensor
    a2ee2a_cell_offset: torch.Tensor
    a2ee2a_distance: torch.Tensor
    a2ee2a_vector: torch.Tensor
    a2ee2a_target_rank: torch.Tensor
    qint_edge_index: torch.Tensor
    qint_cell_offset: torch.Tensor
    qint_distance: torch.Tensor
    qint_vector: torch.Tensor
    trip_e2e: TripletIndex
    trip_a2e: TripletIndex
    trip_e2a: TripletIndex
    quad: QuadrupletIndex
    # padded gather indices (see layers.gather_padded), computed once per forward pass
    e2e_pad: torch.Tensor  # (E, K) -> main edge rows
    a2e_pad: torch.Tensor  # (E, K) -> a2ee2a edge rows
    e2a_pad: torch.Tensor  # (E_ae, K) -> main edge rows
    e2a_atom_pad: torch.Tensor  # (N, K2) -> a2ee2a edge rows
    a2a_pad: torch.Tensor  # (N, K) -> atom rows (a2a sources)
    quad_in_pad: torch.Tensor  # (E_qint, K_i) -> input-triplet rows
    quad_z_pad: torch.Tensor  # (E, K_o) -> rows of the (E_qint * K_t) stage-1 results


@dataclass
class BackboneOutput:
    x_E: torch.Tensor | None  # (N, emb_size_atom)
    x_F: torch.Tensor | None  # (E, emb_size_edge)
    V_st: torch.Tensor  # (E, 3)
    D_st: torch.Tensor  # (E,)
    idx_s: torch.Tensor  # (E,)
    idx_t: torch.Tensor  # (E,)
    graphs: ModelGraphs


def _vectors(pos, cell, edge_index, cell_offset, batch):
    if edge_index.shape[1] == 0:
        return pos.new_zeros((0, 3)), pos.new_zeros((0,))
    vec, dist = edge_vectors(pos, cell, edge_index, cell_offset, batch[edge_index[1]])
    return vec / dist[:, None], dist


def build_model_graphs(pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor,
                       num_structures: int, graphs) -> ModelGraphs:
    """Symmetrise the main graph, compute vectors/distances and all index sets.

    Args:
        pos: (N, 3) Å. cell: (B, 3, 3). batch: (N,) structure of every atom.
        graphs: :class:`openjmp.data.graphs.goc.GOCGraphs` (edge_index, cell_offset per graph).
    """
    num_atoms = pos.shape[0]
    main = graphs.main
    sym = symmetrize_main(main.edge_index, main.cell_offset, batch[main.edge_index[1]],
                          num_structures)
    vec_in, dist_in = _vectors(pos, cell, main.edge_index, main.cell_offset, batch)
    sign = torch.where(sym.reversed, -1.0, 1.0).to(pos.dtype)[:, None]
    main_vector = vec_in[sym.kept] * sign
    main_distance = dist_in[sym.kept]

    a2a_vec, a2a_dist = _vectors(pos, cell, graphs.a2a.edge_index, graphs.a2a.cell_offset, batch)
    del a2a_vec
    ae = graphs.a2ee2a
    ae_vec, ae_dist = _vectors(pos, cell, ae.edge_index, ae.cell_offset, batch)
    qi = graphs.qint
    qi_vec, qi_dist = _vectors(pos, cell, qi.edge_index, qi.cell_offset, batch)

    trip_e2e = triplets(sym.edge_index, num_atoms)
    quad = quadruplets(sym.edge_index, sym.cell_offset, qi.edge_index, qi.cell_offset, num_atoms)
    trip_a2e = mixed_triplets(ae.edge_index, ae.cell_offset, sym.edge_index, sym.cell_offset,
                              num_atoms)
    trip_e2a = mixed_triplets(sym.edge_index, sym.cell_offset, ae.edge_index, ae.cell_offset,
                              num_atoms)
    num_main, num_ae, num_qint = sym.edge_index.shape[1], ae.edge_index.shape[1], qi.edge_index.shape[1]
    a2a_rank = inner_index(graphs.a2a.edge_index[1], num_atoms)
    ae_rank = inner_index(ae.edge_index[1], num_atoms)
    k_t = int(quad.tout_rank_qint.max()) + 1 if quad.tout_rank_qint.numel() else 0
    pads = dict(
        e2e_pad=padded_index(trip_e2e.out, trip_e2e.out_agg, num_main, rows=trip_e2e.in_,
                             num_rows=num_main),
        a2e_pad=padded_index(trip_a2e.out, trip_a2e.out_agg, num_main, rows=trip_a2e.in_,
                             num_rows=num_ae),
        e2a_pad=padded_index(trip_e2a.out, trip_e2a.out_agg, num_ae, rows=trip_e2a.in_,
                             num_rows=num_main),
        e2a_atom_pad=padded_index(ae.edge_index[1], ae_rank, num_atoms),
        a2a_pad=padded_index(graphs.a2a.edge_index[1], a2a_rank, num_atoms,
                             rows=graphs.a2a.edge_index[0], num_rows=num_atoms),
        quad_in_pad=padded_index(quad.triplet_in.out, quad.tin_rank, num_qint),
        quad_z_pad=padded_index(quad.triplet_out.out, quad.tout_rank_main, num_main,
                                rows=quad.triplet_out.in_ * k_t + quad.tout_rank_qint,
                                num_rows=num_qint * k_t),
    )
    return ModelGraphs(
        main_edge_index=sym.edge_index,
        main_cell_offset=sym.cell_offset,
        main_distance=main_distance,
        main_vector=main_vector,
        main_num_neighbors=sym.num_neighbors,
        id_swap=sym.id_swap,
        a2a_edge_index=graphs.a2a.edge_index,
        a2a_distance=a2a_dist,
        a2a_target_rank=a2a_rank,
        a2ee2a_edge_index=ae.edge_index,
        a2ee2a_cell_offset=ae.cell_offset,
        a2ee2a_distance=ae_dist,
        a2ee2a_vector=ae_vec,
        a2ee2a_target_rank=ae_rank,
        qint_edge_index=qi.edge_index,
        qint_cell_offset=qi.cell_offset,
        qint_distance=qi_dist,
        qint_vector=qi_vec,
        trip_e2e=trip_e2e,
        trip_a2e=trip_a2e,
        trip_e2a=trip_e2a,
        quad=quad,
        **pads,
    )


class FinalMLP(nn.Module):
    """Dense(concat of all block outputs -> emb) + residual layers (``out_mlp``)."""

    def __init__(self, emb_size: int, num_blocks: int, num_global_out_layers: int,
                 activation: str | None):
        super().__init__()
        layers: list[nn.Module] = [Dense(emb_size * (num_blocks + 1), emb_size,
                                         activation=activation)]
        layers += [ResidualLayer(emb_size, activation=activation)
                   for _ in range(num_global_out_layers)]
        self.out_mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_mlp(x)


class GemNetOCBackbone(nn.Module):
    """GemNet-OC backbone; submodule names equal the original's (``bases``, ``int_blocks``,
    ``out_blocks``, ``out_mlp_E``, ``out_mlp_F``)."""

    def __init__(self, config: GemNetOCConfig):
        super().__init__()
        config.check_supported()
        self.config = config
        c = config
        self.bases = Bases(c)
        self.int_blocks = nn.ModuleList([InteractionBlock(c) for _ in range(c.num_blocks)])
        self.out_blocks = nn.ModuleList([
            OutputBlock(c.emb_size_atom, c.emb_size_edge, c.emb_size_rbf, c.num_atom,
                        c.num_output_afteratom, activation=c.activation,
                        direct_forces=c.direct_forces)
            for _ in range(c.num_blocks + 1)])
        self.out_mlp_E = FinalMLP(c.emb_size_atom, c.num_blocks, c.num_global_out_layers,
                                  c.activation)
        if c.direct_forces:
            self.out_mlp_F = FinalMLP(c.emb_size_edge, c.num_blocks, c.num_global_out_layers,
                                      c.activation)
        #: recompute each interaction block in the backward pass instead of keeping its
        #: activations (activation checkpointing): ~1/num_blocks of the activation memory for
        #: ~1/3 more compute. Off by default; only acts when gradients are being recorded.
        self.checkpoint_blocks = False

    def forward(self, h: torch.Tensor, pos: torch.Tensor, cell: torch.Tensor,
                batch: torch.Tensor, graphs, num_structures: int | None = None,
                keep_intermediates: bool = False) -> BackboneOutput:
        """See the module docstring. ``cell`` (B, 3, 3) or (3, 3) for one structure."""
        if cell.dim() == 2:
            cell = cell.unsqueeze(0)
        if num_structures is None:
            num_structures = cell.shape[0]
        g = build_model_graphs(pos, cell, batch, num_structures, graphs)
        bases = self.bases(h, g)
        m = bases.m
        idx_t = g.main_edge_index[1]
        x_e, x_f = self.out_blocks[0](h, m, bases.output, idx_t)
        xs_e, xs_f = [x_e], [x_f]
        self.intermediates = {} if keep_intermediates else None
        for i, block in enumerate(self.int_blocks):
            if self.checkpoint_blocks and torch.is_grad_enabled():
                h, m = torch.utils.checkpoint.checkpoint(block, h, m, bases, g,
                                                         use_reentrant=False)
            else:
                h, m = block(h, m, bases, g)
            x_e, x_f = self.out_blocks[i + 1](h, m, bases.output, idx_t)
            xs_e.append(x_e)
            xs_f.append(x_f)
            if keep_intermediates:
                self.intermediates[f"int_block{i}_h"] = h
                self.intermediates[f"int_block{i}_m"] = m
        if keep_intermediates:
            for i, (a, b) in enumerate(zip(xs_e, xs_f)):
                self.intermediates[f"out_block{i}_xE"] = a
                self.intermediates[f"out_block{i}_xF"] = b
        out_f = None
        if self.config.regress_forces and self.config.direct_forces:
            out_f = self.out_mlp_F(torch.cat(xs_f, dim=-1))
        out_e = self.out_mlp_E(torch.cat(xs_e, dim=-1)) if self.config.regress_energy else None
        return BackboneOutput(out_e, out_f, g.main_vector, g.main_distance,
                              g.main_edge_index[0], idx_t, g)
