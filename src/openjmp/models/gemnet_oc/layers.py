"""Basic GemNet-OC layers: activation, bias-free Dense, residual layers, scale factors and the
"efficient" basis-embedding / bilinear layers that aggregate triplets in dense padded matmuls.

Parameter names follow the original module tree (``linear.weight``, ``dense_mlp.{i}``,
``bilinear.linear.weight``, ``scale_factor``) so that state dicts load without renaming.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from openjmp.models.gemnet_oc.linear import linear, linear_silu_nograd

INV_SQRT_2 = 1.0 / math.sqrt(2.0)


SILU_SCALE = 1.0 / 0.6


class _ScaledSiLUFunction(torch.autograd.Function):
    """silu(x) * (1/0.6) with one output allocation (in-place scale) and a fused backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.nn.functional.silu(x).mul_(SILU_SCALE)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True (training on gradient forces needs d/dθ of dE/dx): a
            # differentiable formula, since aten::silu_backward has no derivative.
            s = torch.sigmoid(x)
            return grad * SILU_SCALE * s * (1 + x * (1 - s))
        # scale the fresh result in place (hot in cache) instead of allocating grad * scale
        return torch.ops.aten.silu_backward(grad, x).mul_(SILU_SCALE)


class ScaledSiLU(nn.Module):
    """SiLU(x) / 0.6 (computed as SiLU(x) * (1/0.6), like the original)."""

    scale = SILU_SCALE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _ScaledSiLUFunction.apply(x)
        return torch.nn.functional.silu(x).mul_(SILU_SCALE)


def make_activation(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    name = name.lower()
    if name == "scaled_silu":
        return ScaledSiLU()
    if name in ("silu", "swish"):
        return nn.SiLU()
    raise ValueError(f"unknown activation {name!r}")


@torch.no_grad()
def he_orthogonal_(weight: torch.Tensor) -> torch.Tensor:
    """Orthogonal init, rows standardised, variance 1/fan_in (GemNet's initialiser)."""
    if weight.is_meta:
        return weight
    fan_in = weight.shape[-1] if weight.dim() == 2 else int(weight.numel() // weight.shape[0])
    flat = weight.view(weight.shape[0], -1) if weight.dim() != 2 else weight
    nn.init.orthogonal_(flat)
    mean = flat.mean(dim=1, keepdim=True)
    var = flat.var(dim=1, keepdim=True, unbiased=True)
    flat.copy_((flat - mean) / torch.sqrt(var + 1e-6) * math.sqrt(1.0 / fan_in))
    return weight


class Dense(nn.Module):
    """Bias-free linear layer followed by an activation (or identity). Weight (out, in)."""

    def __init__(self, in_features: int, out_features: int, activation: str | None = None,
                 bias: bool = False):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        he_orthogonal_(self.linear.weight)
        if bias and not self.linear.bias.is_meta:
            nn.init.zeros_(self.linear.bias)
        self.activation = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.linear.weight
        if self.linear.bias is not None:
            return self.activation(self.linear(x))
        if type(self.activation) is ScaledSiLU:
            y = linear_silu_nograd(x, w)  # inference: GEMM + silu fused in oneDNN
            if y is not None:
                return y.mul_(SILU_SCALE)
        return self.activation(linear(x, w))


def add_scaled_(fresh: torch.Tensor, other: torch.Tensor, scale: float) -> torch.Tensor:
    """(fresh + other) * scale, written into ``fresh`` when that is exact.

    ``fresh`` must be a temporary that no autograd node saved (the output of a Linear, of the
    activation or of an add): it is still in cache, so the in-place sum saves a pass over newly
    allocated memory. Same bits as ``(other + fresh) * scale`` (addition commutes in IEEE).
    Falls back to the out-of-place form when dtypes differ (autocast) or ``fresh is other``.
    """
    if fresh is other or fresh.dtype != other.dtype or fresh.shape != other.shape:
        return (other + fresh).mul_(scale)
    return fresh.add_(other).mul_(scale)


class ResidualLayer(nn.Module):
    """(x + Dense(Dense(x))) / sqrt(2)."""

    def __init__(self, units: int, n_layers: int = 2, activation: str | None = None):
        super().__init__()
        self.dense_mlp = nn.Sequential(
            *[Dense(units, units, activation=activation) for _ in range(n_layers)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_scaled_(self.dense_mlp(x), x, INV_SQRT_2)


class ScaleFactor(nn.Module):
    """Multiplication by a fitted scalar, stored as the 0-dim float32 buffer ``scale_factor``.

    The value 0 means "not fitted": the module is then the identity (not zero).
    """

    scale_factor: torch.Tensor

    def __init__(self):
        super().__init__()
        self.register_buffer("scale_factor", torch.tensor(0.0, dtype=torch.float32))

    def value(self, dtype: torch.dtype) -> torch.Tensor:
        """The effective 0-dim factor (1 when not fitted) in ``dtype``."""
        s = self.scale_factor
        return torch.where(s == 0, torch.ones_like(s), s).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value(x.dtype)

    def fold_into(self, dense: Dense) -> torch.Tensor:
        """Weight of the bias-free, activation-free ``dense`` times this factor: scale(dense(x))
        == linear(x, fold_into(dense)) with the multiplication on the (out, in) weight instead of
        on every (rows, out) output (differs only by rounding)."""
        w = dense.linear.weight
        return w * self.value(w.dtype)


class EdgeEmbedding(nn.Module):
    """Dense([h_source, h_target, m]) with activation -> (E, out).

    Computed without the (E, 2A + F) concatenation: W [h_s, h_t, m] = (h W_s)[s] + (h W_t)[t]
    + m W_m, where the atom products are per atom (N rows) instead of per edge (same math).
    """

    def __init__(self, atom_features: int, edge_features: int, out_features: int,
                 activation: str | None = None):
        super().__init__()
        self.atom_features = atom_features
        self.dense = Dense(2 * atom_features + edge_features, out_features, activation=activation)

    def forward(self, h: torch.Tensor, m: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        a = self.atom_features
        w = self.dense.linear.weight
        hw = linear(h, w[:, : 2 * a].reshape(-1, 2, a).transpose(0, 1)
                    .reshape(-1, a))  # (N, 2*out): [h W_s | h W_t]
        out = w.shape[0]
        z = linear(m, w[:, 2 * a:])
        z = z + hw[:, :out].index_select(0, edge_index[0])
        z = z + hw[:, out:].index_select(0, edge_index[1])
        return self.dense.activation(z)


def padded(values: torch.Tensor, outer: torch.Tensor, inner: torch.Tensor, num_outer: int,
           k_max: int | None = None) -> torch.Tensor:
    """Scatter rows into a zero-padded dense tensor: out[outer[i], inner[i]] = values[i].

    values (n, *f) -> (num_outer, k_max, *f); k_max defaults to max(inner) + 1.
    """
    if k_max is None:
        k_max = int(inner.max()) + 1 if inner.numel() > 0 else 0
    out = values.new_zeros((num_outer, k_max) + tuple(values.shape[1:]))
    out[outer, inner] = values
    return out


def gather_padded(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (n, *f), index (..., k) with entries in [0, n] (n = padding) -> (..., k, *f);
    padding entries are zeros. One gather replaces "zeros + index_put" padding."""
    pad = values.new_zeros((1,) + tuple(values.shape[1:]))
    rows = torch.cat([values, pad], dim=0).index_select(0, index.reshape(-1))
    return rows.reshape(tuple(index.shape) + tuple(values.shape[1:]))


class BasisEmbedding(nn.Module):
    """Projection of a raw radial basis combined with a circular/spherical basis.

    ``weight`` is (num_radial, num_spherical, emb) when ``num_spherical`` is given, but it is
    used as if its memory were (num_radial, emb, num_spherical) (reshape, not transpose), as in
    the original. Without ``num_spherical`` it is (emb, num_radial) and used as rbf @ W^T.
    """

    def __init__(self, num_radial: int, emb_size_interm: int, num_spherical: int | None = None):
        super().__init__()
        self.num_radial = num_radial
        self.num_spherical = num_spherical
        if num_spherical is None:
            self.weight = nn.Parameter(torch.empty(emb_size_interm, num_radial))
        else:
            self.weight = nn.Parameter(torch.empty(num_radial, num_spherical, emb_size_interm))
        he_orthogonal_(self.weight)

    def radial(self, rad_basis: torch.Tensor) -> torch.Tensor:
        """(E, R) -> (E, emb, S) with spherical part, else (E, emb)."""
        if self.num_spherical is None:
            return linear(rad_basis, self.weight)
        rad_w = linear(rad_basis, self.weight.reshape(self.num_radial, -1).t())
        emb = self.weight.shape[1] * self.weight.shape[2] // self.num_spherical
        return rad_w.reshape(rad_basis.shape[0], emb, self.num_spherical)

    def per_triplet(self, rad_basis: torch.Tensor, sph_basis: torch.Tensor,
                    idx_sph_outer: torch.Tensor) -> torch.Tensor:
        """sum_s radial(rad)[outer, :, s] * sph[:, s] -> (T, emb)."""
        rad_w = self.radial(rad_basis)[idx_sph_outer]
        return (rad_w @ sph_basis.unsqueeze(-1)).squeeze(-1)

    def padded_atoms(self, rad_basis: torch.Tensor, idx_rad_outer: torch.Tensor,
                     idx_rad_inner: torch.Tensor, num_atoms: int) -> torch.Tensor:
        """Radial part padded per atom: (N, emb, K*S) (or (N, emb, K) without spherical part)."""
        rad_w = self.radial(rad_basis)
        k_max = int(idx_rad_inner.max()) + 1 if idx_rad_inner.numel() > 0 else 0
        pad = padded(rad_w, idx_rad_outer, idx_rad_inner, num_atoms, k_max)
        # (N, K, emb, [S]) -> (N, emb, K, [S]) -> (N, emb, K*[S])
        pad = pad.transpose(1, 2)
        return pad.reshape(num_atoms, rad_w.shape[1], k_max * (self.num_spherical or 1))


def padded_basis(sph_basis: torch.Tensor, idx_sph_outer: torch.Tensor,
                 idx_sph_inner: torch.Tensor, num_edges: int) -> torch.Tensor:
    """Circular/spherical basis as a zero-padded (E, S, Kmax) matrix per output edge."""
    return padded(sph_basis, idx_sph_outer, idx_sph_inner, num_edges).transpose(1, 2)


class EfficientInteractionBilinear(nn.Module):
    """Bilinear layer fused with the sum over the triplets/quadruplets of each output edge.

    out[e] = W · vec( rad_W[e] @ (sph[e] @ M_e) ), where M_e (Kmax, in) holds the messages of
    edge e's triplets (zero padded), sph[e] is (S, Kmax), rad_W[e] is (interm, S); the
    flattened (interm, in) matrix uses index i * in + j; ``bilinear.linear.weight`` is
    (out, interm * in). With ``idx_agg2_*`` the per-edge (S, in) products are further summed
    onto atoms through a padded (N, K2 * S, in) matrix (rad_W is then (N, interm, K2 * S)).
    """

    def __init__(self, emb_size_in: int, emb_size_interm: int, emb_size_out: int):
        super().__init__()
        self.emb_size_in = emb_size_in
        self.emb_size_interm = emb_size_interm
        self.emb_size_out = emb_size_out
        self.bilinear = Dense(emb_size_in * emb_size_interm, emb_size_out, activation=None)

    def forward(self, rad_w: torch.Tensor, sph: torch.Tensor, m: torch.Tensor,
                pad_index: torch.Tensor, agg2_index: torch.Tensor | None = None) -> torch.Tensor:
        """rad_w (E or N, interm, S or K2*S); sph (E, S, K); m (rows, in) message rows;
        pad_index (E, K) rows of m per output edge (padding = rows); agg2_index (N, K2)."""
        m_pad = gather_padded(m, pad_index)  # (E, K, in)
        sph_m = torch.matmul(sph, m_pad)  # (E, S, in)
        if agg2_index is not None:
            sph_m = gather_padded(sph_m, agg2_index)  # (N, K2, S, in)
            n, k2, s_, f = sph_m.shape
            sph_m = sph_m.reshape(n, k2 * s_, f)  # (N, K2*S, in)
        rad_sph_m = torch.matmul(rad_w, sph_m)  # (E or N, interm, in)
        n, a, b = rad_sph_m.shape
        return self.bilinear(rad_sph_m.reshape(n, a * b))
