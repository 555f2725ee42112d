"""Index sets of GemNet-OC, computed from the four graphs with vectorised torch ops.

Edge convention: ``edge_index[0]`` = source, ``edge_index[1]`` = target; an edge "c->a" has
source c and target a; ``cell_offset`` shifts the source (see ``openjmp.data.graphs.radius``).
All functions work on graphs of a whole batch (atom indices already offset per structure).

Definitions follow ``shared/reference/gemnet_oc/README.md`` ("Interaction index sets"):

* :func:`symmetrize_main`: keep s < t edges and same-atom edges with a lexicographically
  negative offset, append their reverses; per structure the layout is [kept, reverses];
  ``id_swap[e]`` is the index of the reverse of edge e.
* :func:`triplets`: e2e triplets b->a, c->a of one graph (identical edge excluded).
* :func:`mixed_triplets`: a2e / e2a / quadruplet triplets between two graphs.
* :func:`quadruplets`: d->b->a<-c quadruplets through the qint edge b->a.
* :func:`inner_index`: rank of each entry within its group (0, 1, 2, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def inner_index(group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Rank of every entry among the entries of its group, in the given order.

    group (n,) long (any order) -> (n,) long with values 0 .. count-1 per group.
    """
    n = group.shape[0]
    if n == 0:
        return group.new_zeros(0)
    order = torch.sort(group, stable=True).indices
    counts = torch.bincount(group, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(n, device=group.device) - starts[group[order]]
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank


def padded_index(outer: torch.Tensor, inner: torch.Tensor, num_outer: int, k: int | None = None,
                 rows: torch.Tensor | None = None, num_rows: int | None = None) -> torch.Tensor:
    """(num_outer, k) long index for a zero-padded gather: entry [outer[i], inner[i]] = rows[i]
    (default i), all other entries = ``num_rows`` (the zero row appended by
    :func:`openjmp.models.gemnet_oc.layers.gather_padded`)."""
    n = outer.shape[0]
    if k is None:
        k = int(inner.max()) + 1 if n > 0 else 0
    if rows is None:
        rows = torch.arange(n, device=outer.device)
    sentinel = n if num_rows is None else num_rows
    idx = torch.full((num_outer, k), sentinel, dtype=torch.long, device=outer.device)
    idx[outer, inner] = rows
    return idx


def _csr_by(index: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stable CSR grouping: (permutation sorted by index, counts per group, start pointer)."""
    perm = torch.sort(index, stable=True).indices
    counts = torch.bincount(index, minlength=num_groups)
    ptr = torch.cumsum(counts, 0) - counts
    return perm, counts, ptr


def _expand_groups(key: torch.Tensor, perm: torch.Tensor, counts: torch.Tensor,
                   ptr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every i, pair i with every member of group key[i].

    Returns (i repeated, member) with i ascending; members in their CSR order.
    """
    reps = counts[key]
    total = int(reps.sum())
    rows = torch.repeat_interleave(torch.arange(key.shape[0], device=key.device), reps,
                                   output_size=total)
    first = torch.cumsum(reps, 0) - reps
    local = torch.arange(total, device=key.device) - first[rows]
    members = perm[ptr[key[rows]] + local]
    return rows, members


@dataclass
class TripletIndex:
    """``in_``/``out`` edge of every triplet (out sorted), ``out_agg`` rank within ``out``."""

    in_: torch.Tensor
    out: torch.Tensor
    out_agg: torch.Tensor | None = None


def triplets(edge_index: torch.Tensor, num_atoms: int) -> TripletIndex:
    """All pairs (b->a in, c->a out) of distinct edges of one graph with the same target."""
    target = edge_index[1]
    num_edges = target.shape[0]
    perm, counts, ptr = _csr_by(target, num_atoms)
    out, in_ = _expand_groups(target, perm, counts, ptr)
    keep = in_ != out
    out, in_ = out[keep], in_[keep]
    return TripletIndex(in_, out, inner_index(out, num_edges))


def mixed_triplets(in_edge_index: torch.Tensor, in_offset: torch.Tensor,
                   out_edge_index: torch.Tensor, out_offset: torch.Tensor, num_atoms: int,
                   to_outedge: bool = False, with_agg: bool = True) -> TripletIndex:
    """Pairs (in edge b->x, out edge) between two graphs on the same atoms.

    For every out edge c->a, all in edges into a (``to_outedge=False``) or into c
    (``to_outedge=True``). Excluded: the pair closing on itself — the in edge's source equals
    the out edge's other atom at the same image (offset_out - offset_in = 0, or
    offset_out + offset_in = 0 for ``to_outedge``).
    """
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
    out, in_ = out[keep], in_[keep]
    agg = inner_index(out, out_edge_index.shape[1]) if with_agg else None
    return TripletIndex(in_, out, agg)


@dataclass
class QuadrupletIndex:
    triplet_in: TripletIndex  # in = main edge d->b, out = qint edge b->a (sorted by out)
    triplet_out: TripletIndex  # in = qint edge b->a, out = main edge c->a (sorted by out)
    out: torch.Tensor  # main edge c->a of every quadruplet (sorted)
    out_agg: torch.Tensor
    trip_in_to_quad: torch.Tensor
    trip_out_to_quad: torch.Tensor
    # for the factorised quadruplet aggregation (see interaction.quadruplet_aggregate)
    num_qint: int = 0
    num_main: int = 0
    tin_rank: torch.Tensor | None = None  # rank of each input triplet within its qint edge
    tout_rank_qint: torch.Tensor | None = None  # rank of each output triplet within its qint edge
    tout_rank_main: torch.Tensor | None = None  # rank of each output triplet within its main edge


def quadruplets(main_edge_index: torch.Tensor, main_offset: torch.Tensor,
                qint_edge_index: torch.Tensor, qint_offset: torch.Tensor,
                num_atoms: int) -> QuadrupletIndex:
    num_main = main_edge_index.shape[1]
    num_qint = qint_edge_index.shape[1]
    trip_in = mixed_triplets(main_edge_index, main_offset, qint_edge_index, qint_offset,
                             num_atoms, to_outedge=True, with_agg=False)
    trip_out = mixed_triplets(qint_edge_index, qint_offset, main_edge_index, main_offset,
                              num_atoms, to_outedge=False, with_agg=False)
    # group the input triplets by their qint edge; every output triplet through qint edge
    # b->a combines with every input triplet of b->a
    perm, counts, ptr = _csr_by(trip_in.out, num_qint)
    trip_out_to_quad, trip_in_to_quad = _expand_groups(trip_out.in_, perm, counts, ptr)
    quad_out = trip_out.out[trip_out_to_quad]
    idx_inter = trip_out.in_[trip_out_to_quad]
    idx_in = trip_in.in_[trip_in_to_quad]
    # drop c == d (same atom, same image)
    src = main_edge_index[0]
    offset_cd = main_offset[idx_in] + qint_offset[idx_inter] - main_offset[quad_out]
    keep = (src[quad_out] != src[idx_in]) | (offset_cd != 0).any(dim=-1)
    quad_out = quad_out[keep]
    return QuadrupletIndex(
        triplet_in=trip_in,
        triplet_out=trip_out,
        out=quad_out,
        out_agg=inner_index(quad_out, num_main),
        trip_in_to_quad=trip_in_to_quad[keep],
        trip_out_to_quad=trip_out_to_quad[keep],
        num_qint=num_qint,
        num_main=num_main,
        tin_rank=inner_index(trip_in.out, num_qint),
        tout_rank_qint=inner_index(trip_out.in_, num_qint),
        tout_rank_main=inner_index(trip_out.out, num_main),
    )


@dataclass
class SymmetricGraph:
    edge_index: torch.Tensor  # (2, E)
    cell_offset: torch.Tensor  # (E, 3)
    id_swap: torch.Tensor  # (E,)
    num_neighbors: torch.Tensor  # (B,) edges per structure
    kept: torch.Tensor  # (E,) index of the input edge each edge comes from
    reversed: torch.Tensor  # (E,) bool, True for the added reverse edges


def symmetrize_main(edge_index: torch.Tensor, cell_offset: torch.Tensor,
                    edge_structure: torch.Tensor, num_structures: int) -> SymmetricGraph:
    """Symmetrise the main graph (README "Main-graph symmetrisation").

    ``edge_structure`` (E,) must be non-decreasing (edges grouped by structure).
    """
    if edge_structure.numel() > 1 and bool((edge_structure[1:] < edge_structure[:-1]).any()):
        raise ValueError("main-graph edges must be grouped by structure (collate the graphs of "
                         "a batch with openjmp.data.graphs.goc.collate_goc_graphs)")
    s, t = edge_index[0], edge_index[1]
    off = cell_offset
    cell_earlier = (off[:, 0] < 0) | ((off[:, 0] == 0) & (off[:, 1] < 0)) | (
        (off[:, 0] == 0) & (off[:, 1] == 0) & (off[:, 2] < 0))
    mask = (s < t) | ((s == t) & cell_earlier)
    kept_idx = torch.nonzero(mask).squeeze(1)
    k = kept_idx.shape[0]
    kept_struct = edge_structure[kept_idx]
    counts = torch.bincount(kept_struct, minlength=num_structures)
    starts = torch.cumsum(counts, 0) - counts  # start of each structure among kept edges
    new_counts = 2 * counts
    total = 2 * k
    pos = torch.arange(total, device=edge_index.device)
    struct = torch.repeat_interleave(torch.arange(num_structures, device=edge_index.device),
                                     new_counts, output_size=total)
    local = pos - 2 * starts[struct]
    is_rev = local >= counts[struct]
    j = starts[struct] + torch.where(is_rev, local - counts[struct], local)  # kept position
    src_edge = kept_idx[j]
    new_s = torch.where(is_rev, t[src_edge], s[src_edge])
    new_t = torch.where(is_rev, s[src_edge], t[src_edge])
    sign = torch.where(is_rev, -1, 1).unsqueeze(1).to(off.dtype)
    new_off = off[src_edge] * sign
    id_swap = torch.where(is_rev, pos - counts[struct], pos + counts[struct])
    return SymmetricGraph(torch.stack([new_s, new_t]), new_off, id_swap, new_counts,
                          src_edge, is_rev)
