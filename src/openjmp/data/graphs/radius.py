"""Radius graphs with periodic boundary conditions, built on vesin.

Edge convention (the one used everywhere in openjmp, identical to the GemNet-OC reference
fixture, ``shared/reference/gemnet_oc/README.md``):

* ``edge_index[0]`` is the **source** s, ``edge_index[1]`` the **target** t. Messages and
  direct forces are aggregated onto the target.
* ``cell_offsets`` (integers, (E, 3)) shift the **source**: the source image sits at
  ``pos[s] + cell_offsets @ cell``; ``shift = cell_offsets @ cell``.
* The edge vector points from the source image to the target:
  ``vector = pos[t] - pos[s] - shift``; ``distance = |vector|``.
* Self pairs (same atom, zero offset) never appear; an atom's own periodic images do.

Edge order: sorted by target, then source, then offset (x, then y, then z), ascending, for
periodic and non-periodic structures alike (deterministic, independent of the neighbour-list
backend).

Cutoff rule: pairs with ``distance <= cutoff`` are kept (the reference's periodic rule; its
non-periodic rule is strict ``<``; the two differ only for distances exactly at the cutoff).

``max_neighbors`` rule: for every target atom keep the ``max_neighbors`` edges with the
smallest distance. **Ties** are broken by the edge order above (smaller source index first,
then smaller offset), i.e. a stable sort by distance of the edges in that order. The kept edges
stay in the edge order above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class RadiusGraph:
    """Edges of one structure (numpy, int64 / float64).

    Attributes:
        edge_index: (2, E) int64, rows (source, target).
        cell_offsets: (E, 3) int64, lattice translation of the source.
        distances: (E,) float64, Å.
        neighbor_rank: (E,) int64 or None, each edge's rank among its target's edges in
            distance order (ties by edge order; see :func:`neighbor_rank`). Kept through
            `select`, it stays right for any selection that keeps, per target, the closest
            edges (a smaller cutoff, a smaller cap), which is how the GemNet-OC graphs are cut
            from one neighbour list without sorting again.
    """

    edge_index: np.ndarray
    cell_offsets: np.ndarray
    distances: np.ndarray
    neighbor_rank: np.ndarray | None = None

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def select(self, mask: np.ndarray) -> RadiusGraph:
        rank = None if self.neighbor_rank is None else self.neighbor_rank[mask]
        return RadiusGraph(self.edge_index[:, mask], self.cell_offsets[mask], self.distances[mask],
                           rank)

    def closest(self, max_neighbors: int) -> RadiusGraph:
        """At most ``max_neighbors`` closest edges per target (the module's tie rule)."""
        if self.neighbor_rank is None:
            return self.select(max_neighbors_mask(self.edge_index[1], self.distances, max_neighbors))
        if max_neighbors < 0:
            raise ValueError(f"max_neighbors must be >= 0, got {max_neighbors}")
        return self.select(self.neighbor_rank < max_neighbors)


def _sort_key_order(source: np.ndarray, target: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    # np.lexsort sorts by the last key first.
    return np.lexsort((offsets[:, 2], offsets[:, 1], offsets[:, 0], source, target))


def radius_graph(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    max_neighbors: int | None = None,
) -> RadiusGraph:
    """All (source image, target) pairs within ``cutoff`` Å, with the module's conventions.

    Args:
        positions: (n, 3) Å.
        cell: (3, 3) Å, rows are lattice vectors (ignored when no direction is periodic).
        pbc: (3,) bools; mixed periodicity (slabs with pbc T, T, F) is supported.
        cutoff: Å, > 0.
        max_neighbors: keep at most this many edges per target (closest first; tie rule in the
            module docstring). None keeps all.

    Small cells are handled exactly: an atom sees every image of every atom within the cutoff,
    however many cells away.
    """
    from vesin import NeighborList

    if cutoff <= 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff}")
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    box = np.ascontiguousarray(cell, dtype=np.float64) if pbc.any() else np.zeros((3, 3))
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, d = nl.compute(positions, box, pbc.tolist(), "ijSd")
    # vesin: D = pos[j] - pos[i] + S @ box. With source = j, target = i, offset = S we get
    # vector(source image -> target) = pos[i] - pos[j] - S @ box = -D.
    source = np.asarray(j, dtype=np.int64)
    target = np.asarray(i, dtype=np.int64)
    offsets = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)
    dist = np.asarray(d, dtype=np.float64)
    order = _sort_key_order(source, target, offsets)
    graph = RadiusGraph(np.stack([source[order], target[order]]), offsets[order], dist[order])
    graph.neighbor_rank = neighbor_rank(graph.edge_index[1], graph.distances)
    if max_neighbors is not None:
        graph = graph.closest(max_neighbors)
    return graph


def neighbor_rank(target: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Rank (0 = closest) of each edge among the edges of its target, by distance; ties are
    broken by the current edge order (stable sort), see module docstring. Any edge order."""
    num_edges = target.shape[0]
    rank = np.empty(num_edges, dtype=np.int64)
    if num_edges == 0:
        return rank
    # Stable order: by target, then distance, then original position (np.lexsort is stable).
    order = np.lexsort((np.arange(num_edges), distances, target))
    sorted_target = target[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_target)) + 1]
    counts = np.diff(np.r_[starts, num_edges])
    rank[order] = np.arange(num_edges) - np.repeat(starts, counts)
    return rank


def max_neighbors_mask(target: np.ndarray, distances: np.ndarray, max_neighbors: int) -> np.ndarray:
    """Boolean mask keeping, per target, the ``max_neighbors`` closest edges.

    Ties in distance are broken by the current edge order (stable sort), see module docstring.
    Works on any edge order; returns a mask aligned with the input.
    """
    if max_neighbors < 0:
        raise ValueError(f"max_neighbors must be >= 0, got {max_neighbors}")
    return neighbor_rank(target, distances) < max_neighbors


def edge_vectors(
    positions: torch.Tensor,
    cell: torch.Tensor,
    edge_index: torch.Tensor,
    cell_offsets: torch.Tensor,
    edge_structure: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable edge vectors and distances (convention in the module docstring).

    Args:
        positions: (N, 3) Å.
        cell: (3, 3) for one structure, or (B, 3, 3) for a batch.
        edge_index: (2, E) long.
        cell_offsets: (E, 3) integer-valued.
        edge_structure: (E,) long, structure of each edge (required when ``cell`` is batched).

    Returns:
        vectors (E, 3) = pos[t] - pos[s] - offset @ cell, and distances (E,).
        Gradients flow to ``positions`` and ``cell``.
    """
    source, target = edge_index[0], edge_index[1]
    offsets = cell_offsets.to(positions.dtype)
    if cell.dim() == 2:
        shift = offsets @ cell
    else:
        if edge_structure is None:
            raise ValueError("edge_structure is required with a batched cell")
        shift = torch.bmm(offsets.unsqueeze(1), cell[edge_structure]).squeeze(1)
    vectors = positions[target] - positions[source] - shift
    return vectors, torch.linalg.vector_norm(vectors, dim=-1)
