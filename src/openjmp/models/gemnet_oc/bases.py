"""Radial, circular and spherical bases of GemNet-OC, and the shared basis projections.

* Radial: Gaussians on x = d / absolute_rbf_cutoff (12 Å for every graph) times the polynomial
  envelope 1 + a x^p + b x^(p+1) + c x^(p+2) (p = 5: 1 - 21x^5 + 35x^6 - 15x^7), 0 for x >= 1.
  Gaussian k: exp(-|temps_k| (x - offset_k)^2); ``offset``/``temps`` are buffers (the stored
  float32 values must be used, see the reference README).
* Circular: real spherical harmonics with m = 0, Y_l(c) = sqrt((2l+1)/4pi) P_l(c),
  l = 0..num_spherical-1, of a clamped cosine.
* Spherical (``legendre_outer``): Y_l(cos angle) * Y_k(cos dihedral), index l * S + k. The
  dihedral is undefined where either of its angles is 0 or pi (three collinear atoms, in every
  crystal): there the original's float64 value, cos = 0, is used with no gradient through the
  dihedral (:func:`cos_dihedral`), so forces stay bounded and symmetric partners cancel in float32.
* Spherical, smooth (``legendre_outer_smooth``, for models openjmp trains): Y_l(cos angle) *
  (sin a sin b)^k Y_k(cos dihedral), a polynomial in the unit vectors
  (:func:`smooth_dihedral_harmonics`): continuous with bounded derivatives everywhere, including
  collinear geometries, like real spherical harmonics (sin^|m|). docs/forces.md.
* Radial cutoffs: every radial basis divides by ``absolute_rbf_cutoff`` (the original, 12 Å for
  every graph), or, with ``rbf_cutoffs``, by the cutoff of the graph its distances come from, so
  each edge's messages vanish smoothly as it leaves its graph (energy continuous in MD).

:class:`Bases` registers its submodules in the order of the original (which fixes the
parameter order, and hence the EMA order of published checkpoints), including the shared
radial basis used by ``sbf_basis_qint``, ``cbf_basis_aeint`` and ``cbf_basis_tint`` (aliases in
the state dict).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from openjmp.models.gemnet_oc.config import GemNetOCConfig
from openjmp.models.gemnet_oc.layers import BasisEmbedding, Dense, EdgeEmbedding, padded_basis


class PolynomialEnvelope(nn.Module):
    def __init__(self, exponent: int = 5):
        super().__init__()
        if exponent <= 0:
            raise ValueError(f"envelope exponent must be > 0, got {exponent}")
        self.p = exponent
        self.a = -(exponent + 1) * (exponent + 2) / 2
        self.b = exponent * (exponent + 2)
        self.c = -exponent * (exponent + 1) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = 1 + self.a * x**self.p + self.b * x ** (self.p + 1) + self.c * x ** (self.p + 2)
        return torch.where(x < 1, env, torch.zeros_like(x))


class GaussianBasis(nn.Module):
    """Gaussians with centres ``offset`` = linspace(start, stop, n) (float32, as torch makes
    them) and widths ``temps`` = 0.5 / spacing^2."""

    offset: torch.Tensor
    temps: torch.Tensor

    def __init__(self, start: float = 0.0, stop: float = 1.0, num_gaussians: int = 50):
        super().__init__()
        offset = torch.linspace(start, stop, num_gaussians, dtype=torch.float32)
        self.register_buffer("offset", offset)
        temp = 0.5 / ((stop - start) / (num_gaussians - 1)) ** 2
        self.register_buffer("temps", torch.full_like(offset, temp))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x[:, None] - self.offset[None, :]
        return torch.exp(diff.square() * -(self.temps.abs()))


class RadialBasis(nn.Module):
    """envelope(d / cutoff) * gaussians(d / cutoff): (E,) Å -> (E, num_radial); exactly 0 with
    zero first and second derivatives at d = cutoff."""

    def __init__(self, num_radial: int, absolute_cutoff: float, envelope_exponent: int = 5):
        super().__init__()
        self.absolute_cutoff = float(absolute_cutoff)
        self.envelope = PolynomialEnvelope(envelope_exponent)
        self.rbf = GaussianBasis(start=0.0, stop=1.0, num_gaussians=num_radial)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        x = d / self.absolute_cutoff
        return self.envelope(x)[:, None] * self.rbf(x)


def legendre_harmonics(cos: torch.Tensor, num_spherical: int) -> torch.Tensor:
    """Y_l^0(cos) = sqrt((2l+1)/(4 pi)) P_l(cos), l = 0..num_spherical-1: (T,) -> (T, S)."""
    polys = [torch.ones_like(cos)]
    if num_spherical > 1:
        polys.append(cos)
    for l in range(2, num_spherical):  # noqa: E741
        polys.append(((2 * l - 1) * cos * polys[l - 1] - (l - 1) * polys[l - 2]) / l)
    pref = [math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(num_spherical)]  # noqa: E741
    return torch.stack([p * c for p, c in zip(polys, pref)], dim=-1)


class CircularBasisLayer(nn.Module):
    """Holds its radial basis (as the original) and evaluates Y_l^0 of triplet cosines."""

    def __init__(self, num_spherical: int, radial_basis: RadialBasis):
        super().__init__()
        self.num_spherical = num_spherical
        self.radial_basis = radial_basis

    def forward(self, d: torch.Tensor, cos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.radial_basis(d), legendre_harmonics(cos, self.num_spherical)


class SphericalBasisLayer(nn.Module):
    """``legendre_outer``: Y_l(cos_angle) Y_k(cos(dihedral)) flattened l-major."""

    def __init__(self, num_spherical: int, radial_basis: RadialBasis):
        super().__init__()
        self.num_spherical = num_spherical
        self.radial_basis = radial_basis

    def forward(self, d: torch.Tensor, cos_angle: torch.Tensor, dihedral: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        a = legendre_harmonics(cos_angle, self.num_spherical)
        b = legendre_harmonics(torch.cos(dihedral), self.num_spherical)
        sph = (a[:, :, None] * b[:, None, :]).flatten(1)
        return self.radial_basis(d), sph


def inner_product_clamped(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sum(x * y, dim=-1).clamp(min=-1.0, max=1.0)


def degenerate_tolerance(dtype: torch.dtype) -> float:
    """sqrt(machine epsilon) of ``dtype``: the sine of an angle below which ``dtype`` cannot
    resolve the plane that angle spans (float32 3.5e-4, float64 1.5e-8)."""
    return math.sqrt(torch.finfo(dtype).eps)


def cos_dihedral(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """cos of the dihedral between the planes with normals ``u`` and ``w`` (Q, 3), each a cross
    product of two unit vectors (so |u| = sin of that angle), as the original computes it:
    cos(atan2(max(|u x w|, 1e-9), u . w)).

    Where |u| or |w| is below :func:`degenerate_tolerance` (an angle of 0 or pi: collinear atoms)
    the dihedral is undefined, float32 gives round-off noise, and the original's derivative is
    O(1e9); there the value is the original's exact-arithmetic one, cos = 0 (theta = pi/2), held
    constant. Elsewhere values equal the original and derivatives are bounded by ~1/tolerance.
    """
    tol = degenerate_tolerance(u.dtype)
    degenerate = (u.norm(dim=-1) < tol) | (w.norm(dim=-1) < tol)
    x = torch.sum(u * w, dim=-1)
    y = torch.linalg.cross(u, w, dim=-1).norm(dim=-1).clamp(min=1e-9)
    cos = torch.cos(torch.atan2(y, x))
    return torch.where(degenerate, torch.zeros_like(cos), cos)


def smooth_dihedral_harmonics(u: torch.Tensor, w: torch.Tensor, num_spherical: int
                              ) -> torch.Tensor:
    """(|u| |w|)^k Y_k(cos dihedral), k = 0..num_spherical-1: (Q, 3), (Q, 3) -> (Q, S).

    With unit-vector cross products, |u| |w| = sin a sin b, and with x = u . w = sin a sin b cos
    phi and s2 = |u|^2 |w|^2 the Legendre recurrence becomes a polynomial one:
    Q_0 = 1, Q_1 = x, k Q_k = (2k-1) x Q_{k-1} - (k-1) s2 Q_{k-2} (Q_k = s^k P_k(cos phi)).
    No division, no angle: smooth everywhere, and every k >= 1 term vanishes where the dihedral
    is undefined (collinear atoms)."""
    x = torch.sum(u * w, dim=-1)
    s2 = torch.sum(u * u, dim=-1) * torch.sum(w * w, dim=-1)
    polys = [torch.ones_like(x)]
    if num_spherical > 1:
        polys.append(x)
    for k in range(2, num_spherical):
        polys.append(((2 * k - 1) * x * polys[k - 1] - (k - 1) * s2 * polys[k - 2]) / k)
    pref = [math.sqrt((2 * k + 1) / (4 * math.pi)) for k in range(num_spherical)]
    return torch.stack([p * c for p, c in zip(polys, pref)], dim=-1)


def _padded_dihedral_basis(y_theta: torch.Tensor, q) -> torch.Tensor:
    """Y_k(cos dihedral) per quadruplet -> (E_qint, K_t * S, K_i): row block = output triplet
    (rank within its qint edge), column = input triplet (rank within its qint edge); the
    excluded c == d quadruplets stay zero."""
    s = y_theta.shape[1]
    k_t = int(q.tout_rank_qint.max()) + 1 if q.tout_rank_qint.numel() else 0
    k_i = int(q.tin_rank.max()) + 1 if q.tin_rank.numel() else 0
    t = q.trip_out_to_quad
    pad = y_theta.new_zeros((q.num_qint, k_t, s, k_i))
    pad[q.triplet_out.in_[t], q.tout_rank_qint[t], :, q.tin_rank[q.trip_in_to_quad]] = y_theta
    return pad.reshape(q.num_qint, k_t * s, k_i)


@dataclass
class BasesOutput:
    m: torch.Tensor  # (E, emb_edge) initial edge embedding
    atom_update: torch.Tensor  # (E, emb_rbf)
    output: torch.Tensor  # (E, emb_rbf)
    qint_rad: torch.Tensor  # (E, emb_rbf)
    qint_cir: torch.Tensor  # (T_qin, emb_cbf)
    # legendre_outer basis in factorised form (see interaction.quadruplet_aggregate):
    # (E, emb_sbf, S^2) radial part; Y_l(cos angle_cab) padded per main edge (E, S, K_o);
    # Y_k(cos dihedral) padded per qint edge (E_qint, K_t * S, K_i)
    qint_sph: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    e2e_rad: torch.Tensor  # (E, emb_rbf)
    e2e_cir: tuple[torch.Tensor, torch.Tensor]  # (E, emb_cbf, S), (E, S, K)
    a2e_rad: torch.Tensor  # (E_ae, emb_rbf)
    a2e_cir: tuple[torch.Tensor, torch.Tensor]  # (E, emb_cbf, S), (E, S, K)
    e2a_rad: torch.Tensor  # (E, emb_rbf)
    e2a_cir: tuple[torch.Tensor, torch.Tensor]  # (N, emb_cbf, K2*S), (E_ae, S, K)
    a2a_rad: torch.Tensor  # (N, emb_rbf, K_aa)


class Bases(nn.Module):
    """Basis functions and their projections shared by all interaction blocks."""

    def __init__(self, config: GemNetOCConfig):
        super().__init__()
        c = config
        exponent = int(c.envelope.get("exponent", 5))
        ns = c.num_spherical
        self.smooth_dihedral = c.sbf_name == "legendre_outer_smooth"

        def radial(graph: str) -> RadialBasis:
            """Radial basis of the distances of ``graph`` (its cutoff with ``rbf_cutoffs``)."""
            cutoff = c.rbf_cutoffs[graph] if c.rbf_cutoffs else c.absolute_rbf_cutoff
            return RadialBasis(c.num_radial, cutoff, exponent)

        # registration order = the original's (parameter order of published checkpoints)
        self.radial_basis = radial("main")
        radial_spherical = radial("main")  # shared by sbf_qint, cbf_aeint, cbf_tint
        self.cbf_basis_qint = CircularBasisLayer(ns, radial("qint"))
        self.sbf_basis_qint = SphericalBasisLayer(ns, radial_spherical)
        self.radial_basis_aeaint = radial("a2ee2a")
        self.cbf_basis_aeint = CircularBasisLayer(ns, radial_spherical)
        self.cbf_basis_eaint = CircularBasisLayer(ns, radial("a2ee2a"))
        self.radial_basis_aint = radial("a2a")
        self.cbf_basis_tint = CircularBasisLayer(ns, radial_spherical)

        self.mlp_rbf_qint = Dense(c.num_radial, c.emb_size_rbf)
        self.mlp_cbf_qint = BasisEmbedding(c.num_radial, c.emb_size_cbf, ns)
        self.mlp_sbf_qint = BasisEmbedding(c.num_radial, c.emb_size_sbf, ns**2)
        self.mlp_rbf_aeint = Dense(c.num_radial, c.emb_size_rbf)
        self.mlp_cbf_aeint = BasisEmbedding(c.num_radial, c.emb_size_cbf, ns)
        self.mlp_rbf_eaint = Dense(c.num_radial, c.emb_size_rbf)
        self.mlp_cbf_eaint = BasisEmbedding(c.num_radial, c.emb_size_cbf, ns)
        self.mlp_rbf_aint = BasisEmbedding(c.num_radial, c.emb_size_rbf)
        self.mlp_rbf_tint = Dense(c.num_radial, c.emb_size_rbf)
        self.mlp_cbf_tint = BasisEmbedding(c.num_radial, c.emb_size_cbf, ns)
        self.mlp_rbf_h = Dense(c.num_radial, c.emb_size_rbf)
        self.mlp_rbf_out = Dense(c.num_radial, c.emb_size_rbf)
        self.edge_emb = EdgeEmbedding(c.emb_size_atom, c.num_radial, c.emb_size_edge,
                                      activation=c.activation)

    def forward(self, h: torch.Tensor, g) -> BasesOutput:
        """``g``: the backbone's :class:`~openjmp.models.gemnet_oc.backbone.ModelGraphs`."""
        num_atoms = h.shape[0]
        num_main = g.main_edge_index.shape[1]
        rbf_main = self.radial_basis(g.main_distance)

        # e2e triplets
        t = g.trip_e2e
        cos_e2e = inner_product_clamped(g.main_vector[t.out], g.main_vector[t.in_])
        rad_tint, cir_tint = self.cbf_basis_tint(g.main_distance, cos_e2e)

        # quadruplets
        q = g.quad
        v_ba = g.qint_vector[q.triplet_in.out]
        v_db = g.main_vector[q.triplet_in.in_]
        cos_abd = inner_product_clamped(v_ba, v_db)
        cross_db = torch.linalg.cross(v_db, v_ba, dim=-1)[q.trip_in_to_quad]
        v_ca = g.main_vector[q.triplet_out.out]
        v_ba_out = g.qint_vector[q.triplet_out.in_]
        cos_cab = inner_product_clamped(v_ca, v_ba_out)
        cross_ca = torch.linalg.cross(v_ca, v_ba_out, dim=-1)[q.trip_out_to_quad]
        rad_cqint, cir_qint = self.cbf_basis_qint(g.qint_distance, cos_abd)
        # legendre_outer = Y_l(cos_cab) Y_k(cos theta): kept factorised (outer product never
        # materialised per quadruplet; see interaction.quadruplet_aggregate)
        rad_sqint = self.sbf_basis_qint.radial_basis(g.main_distance)
        y_cab = legendre_harmonics(cos_cab, self.sbf_basis_qint.num_spherical)
        if self.smooth_dihedral:
            y_theta = smooth_dihedral_harmonics(cross_ca, cross_db, self.sbf_basis_qint.num_spherical)
        else:
            y_theta = legendre_harmonics(cos_dihedral(cross_ca, cross_db),
                                         self.sbf_basis_qint.num_spherical)

        # atom-to-edge
        ta = g.trip_a2e
        rbf_a2ee2a = self.radial_basis_aeaint(g.a2ee2a_distance)
        cos_a2e = inner_product_clamped(g.main_vector[ta.out], g.a2ee2a_vector[ta.in_])
        rad_a2e, cir_a2e = self.cbf_basis_aeint(g.main_distance, cos_a2e)

        # edge-to-atom
        te = g.trip_e2a
        cos_e2a = inner_product_clamped(g.a2ee2a_vector[te.out], g.main_vector[te.in_])
        rad_e2a, cir_e2a = self.cbf_basis_eaint(g.a2ee2a_distance, cos_e2a)

        # atom-to-atom
        rbf_a2a = self.radial_basis_aint(g.a2a_distance)

        num_ae = g.a2ee2a_edge_index.shape[1]
        return BasesOutput(
            m=self.edge_emb(h, rbf_main, g.main_edge_index),
            atom_update=self.mlp_rbf_h(rbf_main),
            output=self.mlp_rbf_out(rbf_main),
            qint_rad=self.mlp_rbf_qint(rbf_main),
            qint_cir=self.mlp_cbf_qint.per_triplet(rad_cqint, cir_qint, q.triplet_in.out),
            qint_sph=(self.mlp_sbf_qint.radial(rad_sqint),
                      padded_basis(y_cab, q.triplet_out.out, q.tout_rank_main, num_main),
                      _padded_dihedral_basis(y_theta, q)),
            e2e_rad=self.mlp_rbf_tint(rbf_main),
            e2e_cir=(self.mlp_cbf_tint.radial(rad_tint),
                     padded_basis(cir_tint, t.out, t.out_agg, num_main)),
            a2e_rad=self.mlp_rbf_aeint(rbf_a2ee2a),
            a2e_cir=(self.mlp_cbf_aeint.radial(rad_a2e),
                     padded_basis(cir_a2e, ta.out, ta.out_agg, num_main)),
            e2a_rad=self.mlp_rbf_eaint(rbf_main),
            e2a_cir=(self.mlp_cbf_eaint.padded_atoms(rad_e2a, g.a2ee2a_edge_index[1],
                                                     g.a2ee2a_target_rank, num_atoms),
                     padded_basis(cir_e2a, te.out, te.out_agg, num_ae)),
            a2a_rad=self.mlp_rbf_aint.padded_atoms(rbf_a2a, g.a2a_edge_index[1],
                                                   g.a2a_target_rank, num_atoms),
        )
