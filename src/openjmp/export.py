"""Portable export: an openjmp energy head as one TorchScript file that needs only ``torch``.

``export_model(model, out)`` writes a TorchScript module (``torch.jit.load(out)``) with

* ``forward(atomic_numbers (N,) long, positions (N, 3), cell (B, 3, 3) rows, pbc (B, 3) bool,
  batch (N,) long) -> {"energy": (B,) float64 eV, "forces": (N, 3) eV/Å}``: builds the four
  GemNet-OC graphs itself (brute-force radius graph in torch, O(N² · images) memory: fine for
  hundreds of atoms, not for 10⁵), then everything below;
* ``forward_graphs(atomic_numbers, positions, cell, batch, main_edge_index, main_cell_offset,
  a2a_edge_index, a2a_cell_offset, a2ee2a_edge_index, a2ee2a_cell_offset, qint_edge_index,
  qint_cell_offset)``: the same from the caller's four graphs (the neighbour-list contract of
  docs/simulations.md), for engines with their own neighbour lists;
* ``graphs(positions, cell, pbc, batch)``: the module's own four graphs (the reference
  implementation of the contract);
* attributes ``cutoffs`` (main, a2ee2a, qint, a2a Å), ``max_neighbors`` (same order),
  ``elements`` (atomic numbers the head was trained on), ``dtype_name``, ``metadata`` (JSON).

Forces are −dE/dx by ``torch.autograd.grad`` inside the scripted module (conservative, the
calculator's ``forces="gradient"``).

How it is built (torch 2.13): the index construction of the backbone (symmetrised main graph,
triplets, quadruplets, padded gather indices: ``gemnet_oc.backbone.build_model_graphs``) has
data-dependent sizes, so it is *scripted* here (``torch.jit.script``, tuple-returning twins of
``gemnet_oc.indices``; tests check they equal the originals); the network from those index
tensors is *traced* (``torch.jit.trace``) with the three places that read a size from data
(``layers.padded`` / ``BasisEmbedding.padded_atoms`` / ``bases._padded_dihedral_basis``)
swapped during tracing for scripted functions, which the trace keeps as code, so no
data-dependent size is frozen. ``torch.export`` (and so AOTInductor) cannot capture the index
construction: its data-dependent guards (``bool(tensor)``, ``int(tensor.sum())``, ``nonzero``)
raise ``GuardOnDataDependentSymNode`` in ``symmetrize_main``.

Limits: graphs built inside the module give every atom GemNet-OC tag 2 (the untagged default:
all atoms in the qint graph); tagged OC20 slabs need the caller's graphs (``forward_graphs``).
No stress. One dtype (the export's; float32 default).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from torch import nn

import openjmp.models.gemnet_oc.indices as _indices

FORMATS = ("torchscript",)


# ----------------------------------------------------------------- scripted index construction
# Tuple-returning twins of openjmp.models.gemnet_oc.indices (dataclasses do not script).


# identical functions: scripted from indices.py itself (one copy of the math)
_inner_index = torch.jit.script(_indices.inner_index)
_csr_by = torch.jit.script(_indices._csr_by)
_expand_groups = torch.jit.script(_indices._expand_groups)


@torch.jit.script
def _padded_index(outer: torch.Tensor, inner: torch.Tensor, num_outer: int, rows: torch.Tensor,
                  num_rows: int) -> torch.Tensor:
    n = outer.shape[0]
    k = int(inner.max()) + 1 if n > 0 else 0
    idx = torch.full((num_outer, k), num_rows, dtype=torch.long, device=outer.device)
    idx[outer, inner] = rows
    return idx


@torch.jit.script
def _triplets(edge_index: torch.Tensor, num_atoms: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    target = edge_index[1]
    perm, counts, ptr = _csr_by(target, num_atoms)
    out, in_ = _expand_groups(target, perm, counts, ptr)
    keep = in_ != out
    out, in_ = out[keep], in_[keep]
    return in_, out, _inner_index(out, target.shape[0])


@torch.jit.script
def _mixed_triplets(in_edge_index: torch.Tensor, in_offset: torch.Tensor,
                    out_edge_index: torch.Tensor, out_offset: torch.Tensor, num_atoms: int,
                    to_outedge: bool) -> tuple[torch.Tensor, torch.Tensor]:
    in_src, in_tgt = in_edge_index[0], in_edge_index[1]
    out_src, out_tgt = out_edge_index[0], out_edge_index[1]
    perm, counts, ptr = _csr_by(in_tgt, num_atoms)
    key = out_src if to_outedge else out_tgt
    out, in_ = _expand_groups(key, perm, counts, ptr)
    if to_outedge:
        atom_out = out_tgt[out]
        offset_sum = out_offset[out] + in_offset[in_]
    else:
        atom_out = out_src[out]
        offset_sum = out_offset[out] - in_offset[in_]
    keep = (in_src[in_] != atom_out) | (offset_sum != 0).any(dim=-1)
    return in_[keep], out[keep]


@torch.jit.script
def _symmetrize_main(edge_index: torch.Tensor, cell_offset: torch.Tensor,
                     edge_structure: torch.Tensor, num_structures: int) -> list[torch.Tensor]:
    """[edge_index, cell_offset, id_swap, num_neighbors, kept, reversed]."""
    if edge_structure.numel() > 1 and bool((edge_structure[1:] < edge_structure[:-1]).any()):
        raise ValueError("main-graph edges must be grouped by structure")
    s, t = edge_index[0], edge_index[1]
    off = cell_offset
    cell_earlier = (off[:, 0] < 0) | ((off[:, 0] == 0) & (off[:, 1] < 0)) | (
        (off[:, 0] == 0) & (off[:, 1] == 0) & (off[:, 2] < 0))
    mask = (s < t) | ((s == t) & cell_earlier)
    kept_idx = torch.nonzero(mask).squeeze(1)
    k = kept_idx.shape[0]
    counts = torch.bincount(edge_structure[kept_idx], minlength=num_structures)
    starts = torch.cumsum(counts, 0) - counts
    total = 2 * k
    pos = torch.arange(total, device=edge_index.device)
    struct = torch.repeat_interleave(torch.arange(num_structures, device=edge_index.device),
                                     2 * counts, output_size=total)
    local = pos - 2 * starts[struct]
    is_rev = local >= counts[struct]
    j = starts[struct] + torch.where(is_rev, local - counts[struct], local)
    src_edge = kept_idx[j]
    new_s = torch.where(is_rev, t[src_edge], s[src_edge])
    new_t = torch.where(is_rev, s[src_edge], t[src_edge])
    sign = torch.where(is_rev, -1, 1).unsqueeze(1).to(off.dtype)
    id_swap = torch.where(is_rev, pos - counts[struct], pos + counts[struct])
    return [torch.stack([new_s, new_t]), off[src_edge] * sign, id_swap, 2 * counts, src_edge,
            is_rev]


@torch.jit.script
def build_indices(batch: torch.Tensor, num_structures: int, main_edge_index: torch.Tensor,
                  main_cell_offset: torch.Tensor, a2a_edge_index: torch.Tensor,
                  a2a_cell_offset: torch.Tensor, ae_edge_index: torch.Tensor,
                  ae_cell_offset: torch.Tensor, qint_edge_index: torch.Tensor,
                  qint_cell_offset: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every integer index tensor of ``build_model_graphs`` (names as its ``ModelGraphs``
    fields), from the four graphs (atom indices offset per structure, edges grouped by
    structure)."""
    num_atoms = batch.shape[0]
    sym = _symmetrize_main(main_edge_index, main_cell_offset, batch[main_edge_index[1]],
                           num_structures)
    sym_ei, sym_off = sym[0], sym[1]
    num_main, num_ae, num_qint = sym_ei.shape[1], ae_edge_index.shape[1], qint_edge_index.shape[1]
    e2e_in, e2e_out, e2e_agg = _triplets(sym_ei, num_atoms)
    # quadruplets
    tin_in, tin_out = _mixed_triplets(sym_ei, sym_off, qint_edge_index, qint_cell_offset,
                                      num_atoms, True)
    tout_in, tout_out = _mixed_triplets(qint_edge_index, qint_cell_offset, sym_ei, sym_off,
                                        num_atoms, False)
    perm, counts, ptr = _csr_by(tin_out, num_qint)
    t_out_q, t_in_q = _expand_groups(tout_in, perm, counts, ptr)
    quad_out = tout_out[t_out_q]
    idx_inter = tout_in[t_out_q]
    idx_in = tin_in[t_in_q]
    src = sym_ei[0]
    offset_cd = sym_off[idx_in] + qint_cell_offset[idx_inter] - sym_off[quad_out]
    keep = (src[quad_out] != src[idx_in]) | (offset_cd != 0).any(dim=-1)
    quad_out = quad_out[keep]
    t_in_q, t_out_q = t_in_q[keep], t_out_q[keep]
    tin_rank = _inner_index(tin_out, num_qint)
    tout_rank_qint = _inner_index(tout_in, num_qint)
    tout_rank_main = _inner_index(tout_out, num_main)
    a2e_in, a2e_out = _mixed_triplets(ae_edge_index, ae_cell_offset, sym_ei, sym_off, num_atoms,
                                      False)
    a2e_agg = _inner_index(a2e_out, num_main)
    e2a_in, e2a_out = _mixed_triplets(sym_ei, sym_off, ae_edge_index, ae_cell_offset, num_atoms,
                                      False)
    e2a_agg = _inner_index(e2a_out, num_ae)
    a2a_rank = _inner_index(a2a_edge_index[1], num_atoms)
    ae_rank = _inner_index(ae_edge_index[1], num_atoms)
    k_t = int(tout_rank_qint.max()) + 1 if tout_rank_qint.numel() > 0 else 0
    n_ae = ae_edge_index.shape[1]
    return {
        "main_edge_index": sym_ei, "main_cell_offset": sym_off, "id_swap": sym[2],
        "main_num_neighbors": sym[3], "main_kept": sym[4], "main_reversed": sym[5],
        "a2a_target_rank": a2a_rank, "a2ee2a_target_rank": ae_rank,
        "e2e_in": e2e_in, "e2e_out": e2e_out, "e2e_out_agg": e2e_agg,
        "a2e_in": a2e_in, "a2e_out": a2e_out, "a2e_out_agg": a2e_agg,
        "e2a_in": e2a_in, "e2a_out": e2a_out, "e2a_out_agg": e2a_agg,
        "quad_tin_in": tin_in, "quad_tin_out": tin_out, "quad_tout_in": tout_in,
        "quad_tout_out": tout_out, "quad_out": quad_out, "quad_out_agg": _inner_index(quad_out, num_main),
        "quad_trip_in_to_quad": t_in_q, "quad_trip_out_to_quad": t_out_q,
        "quad_tin_rank": tin_rank, "quad_tout_rank_qint": tout_rank_qint,
        "quad_tout_rank_main": tout_rank_main,
        "e2e_pad": _padded_index(e2e_out, e2e_agg, num_main, e2e_in, num_main),
        "a2e_pad": _padded_index(a2e_out, a2e_agg, num_main, a2e_in, num_ae),
        "e2a_pad": _padded_index(e2a_out, e2a_agg, num_ae, e2a_in, num_main),
        "e2a_atom_pad": _padded_index(ae_edge_index[1], ae_rank, num_atoms,
                                      torch.arange(n_ae, device=batch.device), n_ae),
        "a2a_pad": _padded_index(a2a_edge_index[1], a2a_rank, num_atoms, a2a_edge_index[0],
                                 num_atoms),
        "quad_in_pad": _padded_index(tin_out, tin_rank, num_qint,
                                     torch.arange(tin_out.shape[0], device=batch.device),
                                     tin_out.shape[0]),
        "quad_z_pad": _padded_index(tout_out, tout_rank_main, num_main,
                                    tout_in * k_t + tout_rank_qint, num_qint * k_t),
    }


# ----------------------------------------------------------------- reference neighbour list


@torch.jit.script
def radius_graph(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, cutoff: float,
                 max_neighbors: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(edge_index (2, E), cell_offset (E, 3), distance (E,)) of one structure: every (source
    image, target) pair with distance <= cutoff, no self pair at zero offset, edges sorted by
    target, source, offset; at most ``max_neighbors`` closest per target (ties: that order).
    ``cell`` rows are lattice vectors; ``pbc`` (3,) bool. Brute force over images."""
    dev = positions.device
    pos = positions.to(torch.float64)
    c = cell.to(torch.float64)
    n = pos.shape[0]
    reps: list[int] = []
    if bool(pbc.any()):
        inv_t = torch.linalg.inv(c).t()  # rows: reciprocal vectors / 2π
        for d in range(3):
            if bool(pbc[d]):
                reps.append(int(torch.ceil(cutoff * torch.linalg.norm(inv_t[d])).item()))
            else:
                reps.append(0)
    else:
        reps = [0, 0, 0]
    rng = [torch.arange(-r, r + 1, device=dev) for r in reps]
    grid = torch.stack(torch.meshgrid(rng[0], rng[1], rng[2], indexing="ij"), dim=-1).reshape(-1, 3)
    shifts = grid.to(torch.float64) @ c if bool(pbc.any()) else torch.zeros_like(grid, dtype=torch.float64)
    # vector = pos[t] - pos[s] - shift, over (t, s, image)
    vec = pos[:, None, None, :] - pos[None, :, None, :] - shifts[None, None, :, :]
    dist = torch.linalg.norm(vec, dim=-1)
    zero_img = (grid == 0).all(dim=-1)
    same = torch.eye(n, dtype=torch.bool, device=dev)[:, :, None] & zero_img[None, None, :]
    ok = (dist <= cutoff) & ~same
    nz = torch.nonzero(ok)  # row-major: sorted by t, s, image (x, y, z)
    t, s, img = nz[:, 0], nz[:, 1], nz[:, 2]
    d = dist[t, s, img]
    off = grid[img]
    if max_neighbors >= 0 and t.numel() > 0:
        order = torch.arange(t.shape[0], device=dev)
        key = torch.argsort(d, stable=True)
        key = key[torch.argsort(t[key], stable=True)]  # by target, then distance, then order
        rank = torch.empty_like(order)
        counts = torch.bincount(t, minlength=n)
        starts = torch.cumsum(counts, 0) - counts
        rank[key] = order - starts[t[key]]
        keep = rank < max_neighbors
        t, s, d, off = t[keep], s[keep], d[keep], off[keep]
    return torch.stack([s, t]), off, d


@torch.jit.script
def goc_graphs(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor,
               cutoffs: list[float], max_neighbors: list[int]) -> list[torch.Tensor]:
    """The four graphs of a batch ([main_ei, main_off, a2a_ei, a2a_off, a2ee2a_ei, a2ee2a_off,
    qint_ei, qint_off], atom indices offset per structure) as openjmp builds them (every atom
    tag 2). ``cutoffs`` / ``max_neighbors``: main, a2ee2a, qint, a2a."""
    num_structures = cell.shape[0]
    counts = torch.bincount(batch, minlength=num_structures)
    outs: list[list[torch.Tensor]] = [[], [], [], [], [], [], [], []]
    start = 0
    for b in range(num_structures):
        nb = int(counts[b])
        ei, off, d = radius_graph(positions[start:start + nb], cell[b], pbc[b], cutoffs[3],
                                  max_neighbors[3])
        ei = ei + start
        for gi in range(3):
            keep = d <= cutoffs[gi]
            e2, o2, d2 = ei[:, keep], off[keep], d[keep]
            if max_neighbors[gi] != max_neighbors[3]:
                tt = e2[1]
                key = torch.argsort(d2, stable=True)
                key = key[torch.argsort(tt[key], stable=True)]
                cnt = torch.bincount(tt - start, minlength=nb)
                st = torch.cumsum(cnt, 0) - cnt
                rank = torch.empty_like(key)
                rank[key] = torch.arange(key.shape[0], device=key.device) - st[tt[key] - start]
                k2 = rank < max_neighbors[gi]
                e2, o2 = e2[:, k2], o2[k2]
            outs[2 * gi].append(e2)
            outs[2 * gi + 1].append(o2)
        outs[6].append(ei)
        outs[7].append(off)
        start += nb
    cat: list[torch.Tensor] = []
    for i in range(8):
        cat.append(torch.cat(outs[i], dim=1 if i % 2 == 0 else 0))
    # order: main, a2a, a2ee2a, qint
    return [cat[0], cat[1], cat[6], cat[7], cat[2], cat[3], cat[4], cat[5]]


# ----------------------------------------------------------------- traced network


@torch.jit.script
def _padded_rows(values: torch.Tensor, outer: torch.Tensor, inner: torch.Tensor,
                 num_outer_t: torch.Tensor) -> torch.Tensor:
    num_outer = int(num_outer_t)
    k = int(inner.max()) + 1 if inner.numel() > 0 else 0
    shape = [num_outer, k] + values.shape[1:]
    out = values.new_zeros(shape)
    out[outer, inner] = values
    return out


@torch.jit.script
def _padded_dihedral(y_theta: torch.Tensor, tout_rank_qint: torch.Tensor, tin_rank: torch.Tensor,
                     t_out_q: torch.Tensor, tout_in: torch.Tensor, t_in_q: torch.Tensor,
                     num_qint_t: torch.Tensor) -> torch.Tensor:
    num_qint = int(num_qint_t)
    s = y_theta.shape[1]
    k_t = int(tout_rank_qint.max()) + 1 if tout_rank_qint.numel() > 0 else 0
    k_i = int(tin_rank.max()) + 1 if tin_rank.numel() > 0 else 0
    pad = y_theta.new_zeros((num_qint, k_t, k_i, s))
    pad[tout_in[t_out_q], tout_rank_qint[t_out_q], tin_rank[t_in_q]] = y_theta
    return pad.permute(0, 1, 3, 2).reshape(num_qint, k_t * s, k_i)


@contextlib.contextmanager
def _traceable_sizes():
    """Swap the three size-from-data helpers of the backbone for scripted ones while tracing."""
    from openjmp.models.gemnet_oc import bases, layers

    def size(n):
        # while tracing, sizes read from shapes are 0-dim tensors: passing them on as tensors
        # keeps them dynamic (an int argument of a scripted function would be frozen)
        return n if isinstance(n, torch.Tensor) else torch.tensor(n)

    def padded(values, outer, inner, num_outer, k_max=None):
        return _padded_rows(values, outer, inner, size(num_outer))

    def padded_atoms(self, rad_basis, idx_rad_outer, idx_rad_inner, num_atoms):
        rad_w = self.radial(rad_basis)
        pad = _padded_rows(rad_w, idx_rad_outer, idx_rad_inner, size(num_atoms)).transpose(1, 2)
        return pad.reshape(num_atoms, rad_w.shape[1], -1)

    def dihedral(y_theta, q):
        return _padded_dihedral(y_theta, q.tout_rank_qint, q.tin_rank, q.trip_out_to_quad,
                                q.triplet_out.in_, q.trip_in_to_quad, size(q.num_qint))

    saved = (layers.padded, layers.BasisEmbedding.padded_atoms, bases._padded_dihedral_basis)
    layers.padded, layers.BasisEmbedding.padded_atoms, bases._padded_dihedral_basis = (
        padded, padded_atoms, dihedral)
    try:
        yield
    finally:
        layers.padded, layers.BasisEmbedding.padded_atoms, bases._padded_dihedral_basis = saved


class _Network(nn.Module):
    """Per-structure energy in model units from positions + the index tensors (traced)."""

    def __init__(self, model: nn.Module, energy_head: nn.Module, reduction: str) -> None:
        super().__init__()
        self.embedding = model.embedding
        self.backbone = model.backbone
        self.head = energy_head
        self.reduction = reduction

    def forward(self, atomic_numbers: torch.Tensor, pos: torch.Tensor, cell: torch.Tensor,
                batch: torch.Tensor, g: dict[str, torch.Tensor]) -> torch.Tensor:
        from openjmp.models.gemnet_oc.backbone import ModelGraphs, _vectors
        from openjmp.models.gemnet_oc.indices import QuadrupletIndex, TripletIndex
        from openjmp.models.heads import energy_from_atoms

        vec_in, dist_in = _vectors(pos, cell, g["in_main_edge_index"], g["in_main_cell_offset"], batch)
        sign = torch.where(g["main_reversed"], -1.0, 1.0).to(pos.dtype)[:, None]
        kept = g["main_kept"]
        _, a2a_dist = _vectors(pos, cell, g["a2a_edge_index"], g["a2a_cell_offset"], batch)
        ae_vec, ae_dist = _vectors(pos, cell, g["a2ee2a_edge_index"], g["a2ee2a_cell_offset"], batch)
        qi_vec, qi_dist = _vectors(pos, cell, g["qint_edge_index"], g["qint_cell_offset"], batch)
        num_main = g["main_edge_index"].shape[1]
        quad = QuadrupletIndex(
            triplet_in=TripletIndex(g["quad_tin_in"], g["quad_tin_out"]),
            triplet_out=TripletIndex(g["quad_tout_in"], g["quad_tout_out"]),
            out=g["quad_out"], out_agg=g["quad_out_agg"],
            trip_in_to_quad=g["quad_trip_in_to_quad"], trip_out_to_quad=g["quad_trip_out_to_quad"],
            num_qint=g["qint_edge_index"].shape[1], num_main=num_main,
            tin_rank=g["quad_tin_rank"], tout_rank_qint=g["quad_tout_rank_qint"],
            tout_rank_main=g["quad_tout_rank_main"])
        mg = ModelGraphs(
            main_edge_index=g["main_edge_index"], main_cell_offset=g["main_cell_offset"],
            main_distance=dist_in[kept], main_vector=vec_in[kept] * sign,
            main_num_neighbors=g["main_num_neighbors"], id_swap=g["id_swap"],
            a2a_edge_index=g["a2a_edge_index"], a2a_distance=a2a_dist,
            a2a_target_rank=g["a2a_target_rank"],
            a2ee2a_edge_index=g["a2ee2a_edge_index"], a2ee2a_cell_offset=g["a2ee2a_cell_offset"],
            a2ee2a_distance=ae_dist, a2ee2a_vector=ae_vec, a2ee2a_target_rank=g["a2ee2a_target_rank"],
            qint_edge_index=g["qint_edge_index"], qint_cell_offset=g["qint_cell_offset"],
            qint_distance=qi_dist, qint_vector=qi_vec,
            trip_e2e=TripletIndex(g["e2e_in"], g["e2e_out"], g["e2e_out_agg"]),
            trip_a2e=TripletIndex(g["a2e_in"], g["a2e_out"], g["a2e_out_agg"]),
            trip_e2a=TripletIndex(g["e2a_in"], g["e2a_out"], g["e2a_out_agg"]),
            quad=quad, e2e_pad=g["e2e_pad"], a2e_pad=g["a2e_pad"], e2a_pad=g["e2a_pad"],
            e2a_atom_pad=g["e2a_atom_pad"], a2a_pad=g["a2a_pad"], quad_in_pad=g["quad_in_pad"],
            quad_z_pad=g["quad_z_pad"])
        bb = self.backbone
        h = self.embedding(atomic_numbers)
        bases = bb.bases(h, mg)
        m = bases.m
        idx_t = mg.main_edge_index[1]
        x_e, _ = bb.out_blocks[0](h, m, bases.output, idx_t)
        xs_e = [x_e]
        for i, block in enumerate(bb.int_blocks):
            h, m = block(h, m, bases, mg)
            x_e, _ = bb.out_blocks[i + 1](h, m, bases.output, idx_t)
            xs_e.append(x_e)
        x_E = bb.out_mlp_E(torch.cat(xs_e, dim=-1))
        energy, _ = energy_from_atoms(self.head, x_E, batch, cell.shape[0], self.reduction)
        return energy


# ----------------------------------------------------------------- the exported module


class ExportedJMP(nn.Module):
    """Scripted wrapper: graphs -> indices -> traced network -> energy, −dE/dx."""

    def __init__(self, network: torch.jit.ScriptModule, std: float, mean: float,
                 linear_reference: torch.Tensor, cutoffs: list[float], max_neighbors: list[int],
                 elements: list[int], dtype: torch.dtype, metadata: str) -> None:
        super().__init__()
        self.network = network
        self.std = std
        self.mean = mean
        self.register_buffer("linear_reference", linear_reference.to(torch.float64))
        self.cutoffs = cutoffs
        self.max_neighbors = max_neighbors
        self.elements = elements
        self.dtype = dtype
        self.dtype_name = str(dtype).replace("torch.", "")
        self.metadata = metadata

    @torch.jit.export
    def graphs(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
               batch: torch.Tensor) -> list[torch.Tensor]:
        """[main_ei, main_off, a2a_ei, a2a_off, a2ee2a_ei, a2ee2a_off, qint_ei, qint_off]."""
        if cell.dim() == 2:
            cell = cell.unsqueeze(0)
        if pbc.dim() == 1:
            pbc = pbc.unsqueeze(0).expand(cell.shape[0], 3)
        return goc_graphs(positions, cell, pbc.to(torch.bool), batch, self.cutoffs,
                          self.max_neighbors)

    @torch.jit.export
    def forward_graphs(self, atomic_numbers: torch.Tensor, positions: torch.Tensor,
                       cell: torch.Tensor, batch: torch.Tensor, main_edge_index: torch.Tensor,
                       main_cell_offset: torch.Tensor, a2a_edge_index: torch.Tensor,
                       a2a_cell_offset: torch.Tensor, a2ee2a_edge_index: torch.Tensor,
                       a2ee2a_cell_offset: torch.Tensor, qint_edge_index: torch.Tensor,
                       qint_cell_offset: torch.Tensor) -> dict[str, torch.Tensor]:
        if cell.dim() == 2:
            cell = cell.unsqueeze(0)
        num_structures = cell.shape[0]
        z = atomic_numbers.to(torch.long)
        batch = batch.to(torch.long)
        idx = build_indices(batch, num_structures, main_edge_index, main_cell_offset,
                            a2a_edge_index, a2a_cell_offset, a2ee2a_edge_index,
                            a2ee2a_cell_offset, qint_edge_index, qint_cell_offset)
        idx["in_main_edge_index"] = main_edge_index
        idx["in_main_cell_offset"] = main_cell_offset
        idx["a2a_edge_index"] = a2a_edge_index
        idx["a2a_cell_offset"] = a2a_cell_offset
        idx["a2ee2a_edge_index"] = a2ee2a_edge_index
        idx["a2ee2a_cell_offset"] = a2ee2a_cell_offset
        idx["qint_edge_index"] = qint_edge_index
        idx["qint_cell_offset"] = qint_cell_offset
        pos = positions.detach().to(self.dtype).requires_grad_(True)
        e = self.network(z, pos, cell.detach().to(self.dtype), batch, idx)
        grads = torch.autograd.grad([(e * self.std).sum()], [pos], allow_unused=True)
        g = grads[0]
        forces = -g if g is not None else torch.zeros_like(pos)
        ref = torch.zeros(num_structures, dtype=torch.float64, device=z.device).index_add_(
            0, batch, self.linear_reference.to(z.device)[z])
        energy = e.detach().to(torch.float64) * self.std + self.mean + ref
        return {"energy": energy, "forces": forces.detach()}

    def forward(self, atomic_numbers: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor,
                pbc: torch.Tensor, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        gr = self.graphs(positions, cell, pbc, batch)
        return self.forward_graphs(atomic_numbers, positions, cell, batch, gr[0], gr[1], gr[2],
                                   gr[3], gr[4], gr[5], gr[6], gr[7])


# ----------------------------------------------------------------- building


def _example(settings) -> tuple:
    """A small periodic example (fcc Cu 2x2x2, rattled) for tracing, and its index tensors."""
    import numpy as np
    from ase.build import bulk

    x = bulk("Cu", "fcc", a=3.61).repeat((2, 2, 2))
    x.rattle(0.05, seed=0)
    return (torch.as_tensor(x.numbers, dtype=torch.long), torch.as_tensor(x.positions),
            torch.as_tensor(np.asarray(x.cell)).unsqueeze(0), torch.ones(1, 3, dtype=torch.bool),
            torch.zeros(len(x), dtype=torch.long))


def build_exported(model: str | Path, head: str | None = None, dtype: str = "float32",
                   use_ema: bool = True) -> torch.jit.ScriptModule:
    """The scripted module of ``model``'s energy head (see the module docstring)."""
    from openjmp.inference import load_predictor
    from openjmp.sim.paths import resolve_model_path

    pred = load_predictor(resolve_model_path(model), head=head, device="cpu", dtype=dtype,
                          use_ema=use_ema, forces="gradient")
    if pred.head_name is None:
        raise ValueError("the model file has no energy head: nothing to export")
    if pred.force_pbc is not None:
        raise ValueError("heads with a pbc override are not supported by the export")
    s = pred.settings
    cutoffs = [float(s.cutoff_main), float(s.cutoff_aeaint), float(s.cutoff_qint), float(s.cutoff_aint)]
    caps = [int(s.max_neighbors_main), int(s.max_neighbors_aeaint), int(s.max_neighbors_qint),
            int(s.max_neighbors_aint)]
    if s.max_neighbors_by_natoms:
        raise ValueError("size-conditional caps (max_neighbors_by_natoms) are not supported")
    z, pos, cell, pbc, batch = _example(s)
    dt = pred.dtype
    graphs = goc_graphs(pos, cell, pbc, batch, cutoffs, caps)
    idx = build_indices(batch, 1, *graphs)
    for name, t in zip(("in_main_edge_index", "in_main_cell_offset", "a2a_edge_index",
                        "a2a_cell_offset", "a2ee2a_edge_index", "a2ee2a_cell_offset",
                        "qint_edge_index", "qint_cell_offset"), graphs):
        idx[name] = t
    from openjmp.models.jmp_model import plain_activations

    plain_activations(pred.model)  # the fused ScaledSiLU is an autograd.Function: not traceable
    net = _Network(pred.model, pred.energy_module, pred.reduction).eval()
    # traced with gradients on (the fused no-grad kernels must not be recorded) and without
    # the oneDNN linear (an autograd.Function, which a trace cannot keep): plain aten ops only
    import warnings

    from openjmp.models.gemnet_oc.linear import set_onednn_enabled

    previous = set_onednn_enabled(False)
    try:
        with _traceable_sizes(), torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(net, (z, pos.to(dt).requires_grad_(True), cell.to(dt), batch, idx),
                                     check_trace=False, strict=False)
    finally:
        set_onednn_enabled(previous)
    ref = pred.scaling.linear_reference
    ref = torch.zeros(120, dtype=torch.float64) if ref is None else ref.to(torch.float64)
    meta = {"source": str(resolve_model_path(model)), "head": pred.head_name, "dtype": dtype,
            "forces": "gradient (-dE/dx)", "cutoffs_main_a2ee2a_qint_a2a": cutoffs,
            "max_neighbors_main_a2ee2a_qint_a2a": caps, "torch": torch.__version__,
            "contract": "docs/simulations.md#portable-export"}
    elements = sorted(int(e) for e in (pred.elements or []))
    wrapper = ExportedJMP(traced, float(pred.scaling.std), float(pred.scaling.mean), ref, cutoffs,
                          caps, elements, dt, json.dumps(meta))
    return torch.jit.script(wrapper)


def export_model(model: str | Path, out: str | Path, format: str = "torchscript",
                 head: str | None = None, dtype: str = "float32", use_ema: bool = True) -> Path:
    """Write the portable file; returns its path. ``format``: ``torchscript`` (the only one that
    works with torch 2.13; ``aoti`` raises with the reason)."""
    if format == "aoti":
        raise NotImplementedError(
            "aoti: torch.export cannot capture the GemNet-OC index construction (data-dependent "
            "sizes and checks in gemnet_oc.indices raise GuardOnDataDependentSymNode), and an "
            "AOTInductor package has no autograd for -dE/dx; use --format torchscript")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS} (or aoti), got {format!r}")
    module = build_exported(model, head=head, dtype=dtype, use_ema=use_ema)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(module, str(out), _extra_files={"openjmp.json": module.metadata})
    return out


__all__ = ["ExportedJMP", "build_exported", "build_indices", "export_model", "goc_graphs",
           "radius_graph"]
