"""GemNet-OC interaction, atom-update and output blocks.

Shapes: N atoms, E main (symmetrised) edges, E_ae a2ee2a edges; widths from the config.
Submodules are registered in the original's order so that parameter order (and hence the EMA
order of published checkpoints) and state-dict names match.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from openjmp.models.gemnet_oc.bases import BasesOutput
from openjmp.models.gemnet_oc.config import GemNetOCConfig
from openjmp.models.gemnet_oc.layers import (
    INV_SQRT_2,
    Dense,
    EdgeEmbedding,
    EfficientInteractionBilinear,
    ResidualLayer,
    ScaleFactor,
    add_scaled_,
    gather_padded,
)
from openjmp.models.gemnet_oc.linear import linear


def _sum_scaled_(terms: list[torch.Tensor], scale: float) -> torch.Tensor:
    """(t0 + t1 + ...) * scale, left to right, accumulated in place into ``terms[0]`` (a fresh
    temporary no autograd node saved; see layers.add_scaled_) when all dtypes agree."""
    first = terms[0]
    if any(t.dtype != first.dtype or t.shape != first.shape for t in terms[1:]):
        # autocast: out of place, with the original's (h + h_e2a + ...) type promotion
        return _sum_out_of_place(terms).mul_(scale)
    for t in terms[1:]:
        first = first.add_(t)
    return first.mul_(scale)


def _sum_out_of_place(terms: list[torch.Tensor]) -> torch.Tensor:
    out = terms[0] + terms[1]
    for t in terms[2:]:
        out = out + t
    return out


def _segment_sum(x: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    return x.new_zeros((size,) + tuple(x.shape[1:])).index_add_(0, index, x)


class TripletInteraction(nn.Module):
    """Triplet message passing: Dense -> * rbf -> scale -> down-projection -> gather by triplet
    ``in`` -> efficient bilinear with the circular basis summed per ``out`` -> scale -> up.

    ``symmetric_mp``: output = (up_ca(x) + up_ac(x)[id_swap]) / sqrt(2) (computed as
    up_ac(x[id_swap]): a row permutation commutes with the row-wise layer); otherwise up_ca(x).
    """

    def __init__(self, emb_size_in: int, emb_size_out: int, emb_size_trip_in: int,
                 emb_size_trip_out: int, emb_size_rbf: int, emb_size_cbf: int,
                 symmetric_mp: bool = True, activation: str | None = None):
        super().__init__()
        self.symmetric_mp = symmetric_mp
        self.dense_ba = Dense(emb_size_in, emb_size_in, activation=activation)
        self.mlp_rbf = Dense(emb_size_rbf, emb_size_in)
        self.scale_rbf = ScaleFactor()
        self.mlp_cbf = EfficientInteractionBilinear(emb_size_trip_in, emb_size_cbf,
                                                    emb_size_trip_out)
        self.scale_cbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_size_in, emb_size_trip_in, activation=activation)
        self.up_projection_ca = Dense(emb_size_trip_out, emb_size_out, activation=activation)
        if symmetric_mp:
            self.up_projection_ac = Dense(emb_size_trip_out, emb_size_out, activation=activation)

    def forward(self, m: torch.Tensor, rad: torch.Tensor,
                cir: tuple[torch.Tensor, torch.Tensor], pad_index: torch.Tensor,
                id_swap: torch.Tensor | None = None, expand_idx: torch.Tensor | None = None,
                agg2_index: torch.Tensor | None = None) -> torch.Tensor:
        """m: input features (edges, or atoms with ``expand_idx`` mapping them to the edges of
        ``rad``); pad_index (E_out, K): rows of those edges per output edge (the triplet ``in``
        sets, padded); agg2_index (N, K2): output edges per atom (edge-to-atom)."""
        x_ba = self.dense_ba(m)
        if expand_idx is not None:
            x_ba = x_ba[expand_idx]
        # scale_rbf(x * mlp_rbf(rad)) with the scale folded into mlp_rbf's (emb_rbf-wide) weight
        x_ba = x_ba * linear(rad, self.scale_rbf.fold_into(self.mlp_rbf))
        x_ba = self.down_projection(x_ba)
        x = self.mlp_cbf(cir[0], cir[1], x_ba, pad_index, agg2_index)
        x = self.scale_cbf_sum(x)
        if self.symmetric_mp:
            return add_scaled_(self.up_projection_ca(x), self.up_projection_ac(x[id_swap]),
                               INV_SQRT_2)
        return self.up_projection_ca(x)


class QuadrupletInteraction(nn.Module):
    """Quadruplet message passing d->b->a<-c through the qint edge b->a (symmetric)."""

    def __init__(self, emb_size_edge: int, emb_size_quad_in: int, emb_size_quad_out: int,
                 emb_size_rbf: int, emb_size_cbf: int, emb_size_sbf: int,
                 activation: str | None = None):
        super().__init__()
        self.dense_db = Dense(emb_size_edge, emb_size_edge, activation=activation)
        self.mlp_rbf = Dense(emb_size_rbf, emb_size_edge)
        self.scale_rbf = ScaleFactor()
        self.mlp_cbf = Dense(emb_size_cbf, emb_size_quad_in)
        self.scale_cbf = ScaleFactor()
        self.mlp_sbf = EfficientInteractionBilinear(emb_size_quad_in, emb_size_sbf,
                                                    emb_size_quad_out)
        self.scale_sbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_size_edge, emb_size_quad_in, activation=activation)
        self.up_projection_ca = Dense(emb_size_quad_out, emb_size_edge, activation=activation)
        self.up_projection_ac = Dense(emb_size_quad_out, emb_size_edge, activation=activation)

    def forward(self, m: torch.Tensor, bases: BasesOutput, quad, quad_in_pad: torch.Tensor,
                quad_z_pad: torch.Tensor, id_swap: torch.Tensor) -> torch.Tensor:
        x_db = self.dense_db(m)
        # scale_rbf / scale_cbf folded into the (narrow) weights of mlp_rbf / mlp_cbf
        x_db = x_db * linear(bases.qint_rad, self.scale_rbf.fold_into(self.mlp_rbf))
        x_db = self.down_projection(x_db)[quad.triplet_in.in_]  # (T_in, quad_in)
        x_db = x_db * linear(bases.qint_cir, self.scale_cbf.fold_into(self.mlp_cbf))
        rad_w, yl_pad, y_pad = bases.qint_sph
        sph_m = quadruplet_aggregate(yl_pad, y_pad, x_db, quad_in_pad, quad_z_pad)
        x = torch.matmul(rad_w, sph_m)  # (E, emb_sbf, quad_in)
        x = self.mlp_sbf.bilinear(x.flatten(1))  # flatten: also for zero edges
        x = self.scale_sbf_sum(x)
        return add_scaled_(self.up_projection_ca(x), self.up_projection_ac(x[id_swap]),
                           INV_SQRT_2)


def quadruplet_aggregate(yl_pad: torch.Tensor, y_pad: torch.Tensor, x_in: torch.Tensor,
                         quad_in_pad: torch.Tensor, quad_z_pad: torch.Tensor) -> torch.Tensor:
    """sum over the quadruplets q of each main edge of (Y_l(cab_q) Y_k(theta_q)) x[q].

    Same value as the original (legendre_outer basis padded per edge, times the messages
    gathered per quadruplet), but factorised: a quadruplet is (output triplet t = (c->a, b->a),
    input triplet i = (d->b, b->a)); Y_l depends only on t, the message only on i. So
    1. per qint edge b->a: Z[t] = sum_i Y_k(theta_(t,i)) x[i]  — one (K_t*S, K_i) @ (K_i, in)
       matmul per qint edge (excluded c == d quadruplets are zeros in ``y_pad``);
    2. per main edge c->a: out[l, k] = sum_t Y_l(cab_t) Z[t, k]  — (S, K_o) @ (K_o, S*in).
    Returns (E, S*S, in) with index l*S + k, as the original's sph @ m.

    yl_pad (E, S, K_o); y_pad (E_qint, K_t*S, K_i); x_in (T_in, in) input-triplet messages;
    quad_in_pad (E_qint, K_i), quad_z_pad (E, K_o): padded gather indices.
    """
    num_main, s, _ = yl_pad.shape
    num_qint = y_pad.shape[0]
    n_in = x_in.shape[1]
    x_pad = gather_padded(x_in, quad_in_pad)  # (Eq, Ki, in)
    z = torch.matmul(y_pad, x_pad)  # (Eq, Kt*S, in)
    z = z.reshape(-1, s * n_in) if num_qint > 0 else z.new_zeros((0, s * n_in))
    z_pad = gather_padded(z, quad_z_pad)  # (E, Ko, S*in)
    out = torch.matmul(yl_pad, z_pad)  # (E, S, S*in)
    return out.reshape(num_main, s * s, n_in)


class PairInteraction(nn.Module):
    """Atom-to-atom interaction over the a2a graph (bilinear in rbf x neighbour features)."""

    def __init__(self, emb_size_atom: int, emb_size_pair_in: int, emb_size_pair_out: int,
                 emb_size_rbf: int, activation: str | None = None):
        super().__init__()
        self.bilinear = Dense(emb_size_rbf * emb_size_pair_in, emb_size_pair_out)
        self.scale_rbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_size_atom, emb_size_pair_in, activation=activation)
        self.up_projection = Dense(emb_size_pair_out, emb_size_atom, activation=activation)

    def forward(self, h: torch.Tensor, rad_basis: torch.Tensor, pad_index: torch.Tensor
                ) -> torch.Tensor:
        """rad_basis (N, emb_rbf, K); pad_index (N, K): source atom of each a2a edge."""
        x_pad = gather_padded(self.down_projection(h), pad_index)  # (N, K, pair_in)
        x = torch.matmul(rad_basis, x_pad)  # (N, emb_rbf, pair_in)
        h_out = self.scale_rbf_sum(self.bilinear(x.flatten(1)))
        return self.up_projection(h_out)


def _mlp(units_in: int, units: int, n_hidden: int, activation: str | None) -> nn.ModuleList:
    layers: list[nn.Module] = []
    if units_in != units:
        layers.append(Dense(units_in, units, activation=activation))
    layers += [ResidualLayer(units, activation=activation) for _ in range(n_hidden)]
    return nn.ModuleList(layers)


class AtomUpdateBlock(nn.Module):
    """h' = MLP(scale(sum over edges into the atom of m * Dense(rbf_h)))."""

    def __init__(self, emb_size_atom: int, emb_size_edge: int, emb_size_rbf: int, n_hidden: int,
                 activation: str | None = None):
        super().__init__()
        self.dense_rbf = Dense(emb_size_rbf, emb_size_edge)
        self.scale_sum = ScaleFactor()
        self.layers = _mlp(emb_size_edge, emb_size_atom, n_hidden, activation)

    def forward(self, h: torch.Tensor, m: torch.Tensor, basis_rad: torch.Tensor,
                idx_atom: torch.Tensor) -> torch.Tensor:
        x = _segment_sum(m * self.dense_rbf(basis_rad), idx_atom, h.shape[0])
        x = self.scale_sum(x)
        for layer in self.layers:
            x = layer(x)
        return x


class OutputBlock(AtomUpdateBlock):
    """Per-atom energy features and per-edge force features of one block.

    ``seq_energy_pre`` is the same ModuleList as ``layers`` (registered twice as in the
    original, so both names appear in the state dict).
    """

    def __init__(self, emb_size_atom: int, emb_size_edge: int, emb_size_rbf: int, n_hidden: int,
                 n_hidden_afteratom: int, activation: str | None = None,
                 direct_forces: bool = True):
        super().__init__(emb_size_atom, emb_size_edge, emb_size_rbf, n_hidden, activation)
        self.direct_forces = direct_forces
        self.seq_energy_pre = self.layers
        self.seq_energy2 = (_mlp(emb_size_atom, emb_size_atom, n_hidden_afteratom, activation)
                            if n_hidden_afteratom >= 1 else None)
        if direct_forces:
            self.scale_rbf_F = ScaleFactor()
            self.seq_forces = _mlp(emb_size_edge, emb_size_edge, n_hidden, activation)
            self.dense_rbf_F = Dense(emb_size_rbf, emb_size_edge)

    def forward(self, h: torch.Tensor, m: torch.Tensor, basis_rad: torch.Tensor,
                idx_atom: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x_e = _segment_sum(m * self.dense_rbf(basis_rad), idx_atom, h.shape[0])
        x_e = self.scale_sum(x_e)
        for layer in self.seq_energy_pre:
            x_e = layer(x_e)
        if self.seq_energy2 is not None:
            x_e = add_scaled_(x_e, h, INV_SQRT_2)
            for layer in self.seq_energy2:
                x_e = layer(x_e)
        x_f = None
        if self.direct_forces:
            x_f = m
            for layer in self.seq_forces:
                x_f = layer(x_f)
            # scale_rbf_F folded into dense_rbf_F's (emb_rbf-wide) weight
            x_f = x_f * linear(basis_rad, self.scale_rbf_F.fold_into(self.dense_rbf_F))
        return x_e, x_f


class InteractionBlock(nn.Module):
    """One GemNet-OC interaction block (edge and atom embedding update)."""

    def __init__(self, c: GemNetOCConfig):
        super().__init__()
        act = c.activation
        self.dense_ca = Dense(c.emb_size_edge, c.emb_size_edge, activation=act)
        self.trip_interaction = TripletInteraction(
            c.emb_size_edge, c.emb_size_edge, c.emb_size_trip_in, c.emb_size_trip_out,
            c.emb_size_rbf, c.emb_size_cbf, symmetric_mp=True, activation=act)
        self.quad_interaction = QuadrupletInteraction(
            c.emb_size_edge, c.emb_size_quad_in, c.emb_size_quad_out, c.emb_size_rbf,
            c.emb_size_cbf, c.emb_size_sbf, activation=act)
        self.atom_edge_interaction = TripletInteraction(
            c.emb_size_atom, c.emb_size_edge, c.emb_size_trip_in, c.emb_size_trip_out,
            c.emb_size_rbf, c.emb_size_cbf, symmetric_mp=True, activation=act)
        self.edge_atom_interaction = TripletInteraction(
            c.emb_size_edge, c.emb_size_atom, c.emb_size_trip_in, c.emb_size_trip_out,
            c.emb_size_rbf, c.emb_size_cbf, symmetric_mp=False, activation=act)
        self.atom_interaction = PairInteraction(
            c.emb_size_atom, c.emb_size_aint_in, c.emb_size_aint_out, c.emb_size_rbf,
            activation=act)
        self.layers_before_skip = nn.ModuleList(
            [ResidualLayer(c.emb_size_edge, activation=act) for _ in range(c.num_before_skip)])
        self.layers_after_skip = nn.ModuleList(
            [ResidualLayer(c.emb_size_edge, activation=act) for _ in range(c.num_after_skip)])
        self.atom_emb_layers = nn.ModuleList(
            [ResidualLayer(c.emb_size_atom, activation=act) for _ in range(c.num_atom_emb_layers)])
        self.atom_update = AtomUpdateBlock(c.emb_size_atom, c.emb_size_edge, c.emb_size_rbf,
                                           c.num_atom, activation=act)
        self.concat_layer = EdgeEmbedding(c.emb_size_atom, c.emb_size_edge, c.emb_size_edge,
                                          activation=act)
        self.residual_m = nn.ModuleList(
            [ResidualLayer(c.emb_size_edge, activation=act) for _ in range(c.num_concat)])
        # 1/sqrt(number of merged terms): edges (skip, e2e, quad, a2e), atoms (h, e2a, a2a)
        self.inv_sqrt_num_eint = 1.0 / math.sqrt(4.0)
        self.inv_sqrt_num_aint = 1.0 / math.sqrt(3.0)

    def forward(self, h: torch.Tensor, m: torch.Tensor, bases: BasesOutput, g
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x_ca_skip = self.dense_ca(m)
        x_e2e = self.trip_interaction(m, bases.e2e_rad, bases.e2e_cir, g.e2e_pad,
                                      id_swap=g.id_swap)
        x_qint = self.quad_interaction(m, bases, g.quad, g.quad_in_pad, g.quad_z_pad, g.id_swap)
        x_a2e = self.atom_edge_interaction(h, bases.a2e_rad, bases.a2e_cir, g.a2e_pad,
                                           id_swap=g.id_swap, expand_idx=g.a2ee2a_edge_index[0])
        h_e2a = self.edge_atom_interaction(m, bases.e2a_rad, bases.e2a_cir, g.e2a_pad,
                                           agg2_index=g.e2a_atom_pad)
        h_a2a = self.atom_interaction(h, bases.a2a_rad, g.a2a_pad)

        # sums accumulate in place into fresh temporaries (see layers.add_scaled_); the
        # summation order is the original's, left to right
        x = _sum_scaled_([x_ca_skip, x_e2e, x_qint, x_a2e], self.inv_sqrt_num_eint)
        h = _sum_scaled_([h_e2a, h, h_a2a], self.inv_sqrt_num_aint)
        for layer in self.layers_before_skip:
            x = layer(x)
        m = add_scaled_(x, m, INV_SQRT_2)
        for layer in self.layers_after_skip:
            m = layer(m)
        for layer in self.atom_emb_layers:
            h = layer(h)
        h = add_scaled_(self.atom_update(h, m, bases.atom_update, g.main_edge_index[1]), h,
                        INV_SQRT_2)
        m2 = self.concat_layer(h, m, g.main_edge_index)
        for layer in self.residual_m:
            m2 = layer(m2)
        m = add_scaled_(m2, m, INV_SQRT_2)
        return h, m
