"""The four GemNet-OC graphs of a structure (main, a2a, a2ee2a, qint), as JMP builds them.

Per structure (reference README "How JMP builds the four graphs"):

1. a2a: :func:`openjmp.data.graphs.radius.radius_graph` with the aint cutoff and aint
   max_neighbors (closest first).
2. main, a2ee2a, qint: sub-selected from the a2a edges — a distance cut ``d <= cutoff`` only if
   the cutoff differs from aint's (``np.isclose``), and a per-target max-neighbour cut (closest
   first) only if the max differs from aint's. Edges keep the a2a order.
3. qint keeps only edges whose source or target has a tag in ``qint_tags``.

The main graph is symmetrised inside the model, not here. :func:`collate_goc_graphs` concatenates
per-structure graphs with atom-index offsets (edges stay grouped by structure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from openjmp.data.graphs.radius import RadiusGraph, radius_graph

GRAPH_NAMES = ("main", "a2a", "a2ee2a", "qint")


@dataclass(frozen=True)
class GOCGraphSettings:
    """Cutoffs (Å) and max neighbours per graph. ``aeaint`` is the a2ee2a graph."""

    cutoff_main: float
    cutoff_aeaint: float
    cutoff_qint: float
    cutoff_aint: float
    max_neighbors_main: int
    max_neighbors_aeaint: int
    max_neighbors_qint: int
    max_neighbors_aint: int
    #: size-conditional caps ((threshold, cap), ...) with ascending thresholds: a structure of
    #: more than ``threshold`` atoms gets main cap ``cap`` (the last matching rule wins) and the
    #: other graphs JMP's proportions of it (JMP's ``conditional_max_neighbors``: 30, 10 above
    #: 200 atoms, 5 above 300); empty: the fixed caps above for every structure
    max_neighbors_by_natoms: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_graph_dict(cls, g: dict) -> GOCGraphSettings:
        """The settings of a ``graph`` entry (a dataset's ``graph`` config, a model file head's
        ``graph``; docs/model-files.md): ``cutoff`` (Å) for every graph unless
        ``cutoff_main`` / ``cutoff_a2ee2a`` / ``cutoff_qint`` / ``cutoff_a2a`` say otherwise;
        ``max_neighbors`` the main cap, the other caps JMP's proportions of it (a2ee2a 20/30,
        qint 8/30, a2a 1000/30) unless ``max_neighbors_<graph>`` are given; optional
        ``max_neighbors_by_natoms``. The one place these entries become settings."""
        if "cutoff" not in g or "max_neighbors" not in g:
            raise ValueError(f"graph settings need 'cutoff' and 'max_neighbors', got {dict(g)}")
        cutoff = float(g["cutoff"])
        n = int(g["max_neighbors"])

        def cut(name: str) -> float:
            v = g.get(f"cutoff_{name}")
            return cutoff if v is None else float(v)

        settings = cls(
            cutoff_main=cut("main"), cutoff_aeaint=cut("a2ee2a"), cutoff_qint=cut("qint"),
            cutoff_aint=cut("a2a"),
            max_neighbors_main=n,
            max_neighbors_aeaint=int(g.get("max_neighbors_a2ee2a") or int(n * 20 / 30)),
            max_neighbors_qint=int(g.get("max_neighbors_qint") or int(n * 8 / 30)),
            max_neighbors_aint=int(g.get("max_neighbors_a2a") or int(n * 1000 / 30)),
            max_neighbors_by_natoms=tuple((int(t), int(c))
                                          for t, c in (g.get("max_neighbors_by_natoms") or ())),
        )
        settings.validate()
        return settings

    @property
    def cutoffs(self) -> dict[str, float]:
        """Cutoff per graph (Å), keyed by the graph names of :data:`GRAPH_NAMES`."""
        return {"main": self.cutoff_main, "a2ee2a": self.cutoff_aeaint,
                "qint": self.cutoff_qint, "a2a": self.cutoff_aint}

    @classmethod
    def from_constant(cls, cutoff: float, max_neighbors: int) -> GOCGraphSettings:
        """JMP's ``Cutoffs.from_constant`` + ``MaxNeighbors.from_goc_base_proportions``."""
        return cls(
            cutoff_main=cutoff, cutoff_aeaint=cutoff, cutoff_qint=cutoff, cutoff_aint=cutoff,
            max_neighbors_main=max_neighbors,
            max_neighbors_aeaint=int(max_neighbors * 20 / 30),
            max_neighbors_qint=int(max_neighbors * 8 / 30),
            max_neighbors_aint=int(max_neighbors * 1000 / 30),
        )

    def for_natoms(self, natoms: int) -> GOCGraphSettings:
        """The fixed-cap settings for a structure of ``natoms`` atoms (see
        ``max_neighbors_by_natoms``); ``self`` when no rule applies."""
        cap = None
        for threshold, value in self.max_neighbors_by_natoms:
            if natoms > threshold:
                cap = int(value)
        if cap is None:
            return self
        scaled = GOCGraphSettings.from_constant(self.cutoff_aint, cap)
        return GOCGraphSettings(
            cutoff_main=self.cutoff_main, cutoff_aeaint=self.cutoff_aeaint, cutoff_qint=self.cutoff_qint,
            cutoff_aint=self.cutoff_aint, max_neighbors_main=cap,
            max_neighbors_aeaint=scaled.max_neighbors_aeaint, max_neighbors_qint=scaled.max_neighbors_qint,
            max_neighbors_aint=scaled.max_neighbors_aint,
        )

    def validate(self) -> None:
        thresholds = [int(t) for t, _ in self.max_neighbors_by_natoms]
        if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError(f"max_neighbors_by_natoms thresholds must be strictly ascending, got {thresholds}")
        if any(int(c) < 1 for _, c in self.max_neighbors_by_natoms):
            raise ValueError(f"max_neighbors_by_natoms caps must be >= 1, got {list(self.max_neighbors_by_natoms)}")
        for g in ("main", "aeaint", "qint"):
            if getattr(self, f"cutoff_{g}") > self.cutoff_aint:
                raise ValueError(f"cutoff_{g} must be <= cutoff_aint")
            if getattr(self, f"max_neighbors_{g}") > self.max_neighbors_aint:
                raise ValueError(f"max_neighbors_{g} must be <= max_neighbors_aint")


@dataclass
class EdgeSet:
    """edge_index (2, E) long [source, target]; cell_offset (E, 3) long (shifts the source)."""

    edge_index: torch.Tensor
    cell_offset: torch.Tensor

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def to(self, device) -> EdgeSet:
        return EdgeSet(self.edge_index.to(device), self.cell_offset.to(device))


@dataclass(frozen=True)
class CapTruncation:
    """A neighbour cap that cut a graph: ``atoms`` target atoms had more than ``cap`` neighbours
    within the graph's ``cutoff`` (Å), up to ``most``. Where a cap cuts, the energy jumps
    whenever the order of neighbours changes, and ties at the cap break crystal symmetry."""

    graph: str
    cap: int
    cutoff: float
    atoms: int
    most: int

    def describe(self) -> str:
        return (f"{self.graph} graph: {self.atoms} atom(s) have more than {self.cap} neighbours "
                f"within {self.cutoff:g} Å (up to {self.most})")

    @staticmethod
    def merge(items: Sequence[CapTruncation]) -> tuple[CapTruncation, ...]:
        """One entry per (graph, cap, cutoff): atoms summed, ``most`` the largest."""
        out: dict[tuple, CapTruncation] = {}
        for t in items:
            key = (t.graph, t.cap, t.cutoff)
            old = out.get(key)
            out[key] = t if old is None else CapTruncation(
                t.graph, t.cap, t.cutoff, old.atoms + t.atoms, max(old.most, t.most))
        return tuple(out.values())


@dataclass
class GOCGraphs:
    main: EdgeSet
    a2a: EdgeSet
    a2ee2a: EdgeSet
    qint: EdgeSet
    #: the caps that cut these graphs (empty: every neighbour within each cutoff is kept)
    truncations: tuple[CapTruncation, ...] = ()

    def to(self, device) -> GOCGraphs:
        return GOCGraphs(**{name: getattr(self, name).to(device) for name in GRAPH_NAMES},
                         truncations=self.truncations)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray | torch.Tensor]) -> GOCGraphs:
        """From ``graph_<name>_edge_index`` / ``graph_<name>_cell_offset`` arrays (fixture format)."""
        out = {}
        for name in GRAPH_NAMES:
            ei = torch.as_tensor(np.asarray(arrays[f"graph_{name}_edge_index"]), dtype=torch.long)
            off = torch.as_tensor(np.asarray(arrays[f"graph_{name}_cell_offset"]),
                                  dtype=torch.long)
            out[name] = EdgeSet(ei.reshape(2, -1), off.reshape(-1, 3))
        return cls(**out)


def _to_edge_set(g: RadiusGraph) -> EdgeSet:
    return EdgeSet(torch.from_numpy(np.ascontiguousarray(g.edge_index)).long(),
                   torch.from_numpy(np.ascontiguousarray(g.cell_offsets)).long())


def _subselect(a2a: RadiusGraph, cutoff: float, max_neighbors: int, settings: GOCGraphSettings
               ) -> RadiusGraph:
    # a smaller cutoff and a cap both keep each target's closest edges, so the neighbour ranks
    # of the a2a graph stay valid and no second sort is needed
    g = a2a
    if not np.isclose(cutoff, settings.cutoff_aint):
        g = g.select(g.distances <= cutoff)
    if max_neighbors != settings.max_neighbors_aint:
        g = g.closest(max_neighbors)
    return g


def build_goc_graphs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                     tags: np.ndarray, settings: GOCGraphSettings,
                     qint_tags: Sequence[int] = (1, 2)) -> GOCGraphs:
    """The four graphs of one structure (positions (n, 3) Å, cell (3, 3) rows, pbc (3,)); the
    caps are the settings' size-conditional ones for this structure's atom count, if any."""
    settings.validate()
    settings = settings.for_natoms(len(positions))
    full = radius_graph(positions, cell, pbc, settings.cutoff_aint)
    truncations = cap_truncations(full, settings)
    a2a = full.closest(settings.max_neighbors_aint)
    main = _subselect(a2a, settings.cutoff_main, settings.max_neighbors_main, settings)
    a2ee2a = _subselect(a2a, settings.cutoff_aeaint, settings.max_neighbors_aeaint, settings)
    qint = _subselect(a2a, settings.cutoff_qint, settings.max_neighbors_qint, settings)
    tags = np.asarray(tags).reshape(-1)
    in_tags = np.isin(tags, np.asarray(list(qint_tags), dtype=tags.dtype))
    qint = qint.select(in_tags[qint.edge_index[0]] | in_tags[qint.edge_index[1]])
    return GOCGraphs(main=_to_edge_set(main), a2a=_to_edge_set(a2a),
                     a2ee2a=_to_edge_set(a2ee2a), qint=_to_edge_set(qint),
                     truncations=truncations)


def cap_truncations(full: RadiusGraph, settings: GOCGraphSettings) -> tuple[CapTruncation, ...]:
    """The caps of ``settings`` that cut the uncapped neighbour list ``full`` (a2a cutoff)."""
    out = []
    target, dist = full.edge_index[1], full.distances
    for graph, cutoff, cap in (("main", settings.cutoff_main, settings.max_neighbors_main),
                               ("a2ee2a", settings.cutoff_aeaint, settings.max_neighbors_aeaint),
                               ("qint", settings.cutoff_qint, settings.max_neighbors_qint),
                               ("a2a", settings.cutoff_aint, settings.max_neighbors_aint)):
        counts = np.bincount(target[dist <= cutoff]) if target.size else np.zeros(0, np.int64)
        cut = counts > cap
        if cut.any():
            out.append(CapTruncation(graph, int(cap), float(cutoff), int(cut.sum()),
                                     int(counts.max())))
    return tuple(out)


def collate_goc_graphs(graphs: Sequence[GOCGraphs], natoms: Sequence[int]) -> GOCGraphs:
    """Concatenate per-structure graphs, offsetting atom indices by the preceding atoms."""
    if len(graphs) != len(natoms):
        raise ValueError(f"{len(graphs)} graphs but {len(natoms)} structures")
    offsets = np.concatenate([[0], np.cumsum(np.asarray(natoms, dtype=np.int64))[:-1]])
    out = {}
    for name in GRAPH_NAMES:
        eis = [getattr(g, name).edge_index + int(o) for g, o in zip(graphs, offsets)]
        offs = [getattr(g, name).cell_offset for g in graphs]
        out[name] = EdgeSet(torch.cat(eis, dim=1), torch.cat(offs, dim=0))
    truncations = CapTruncation.merge([t for g in graphs for t in g.truncations])
    return GOCGraphs(**out, truncations=truncations)


def goc_graphs_for_batch(batch, settings: GOCGraphSettings | Sequence[GOCGraphSettings],
                         qint_tags: Sequence[int] = (1, 2)) -> GOCGraphs:
    """Graphs of every structure of an ``openjmp.data.collate.Batch`` (built per structure)."""
    natoms = batch.natoms.tolist()
    starts = np.concatenate([[0], np.cumsum(natoms)[:-1]])
    pos = batch.pos.detach().cpu().double().numpy()
    cell = batch.cell.detach().cpu().double().numpy()
    pbc = batch.pbc.cpu().numpy()
    tags = batch.tags.cpu().numpy()
    per = []
    for i, (s, n) in enumerate(zip(starts, natoms)):
        st = settings if isinstance(settings, GOCGraphSettings) else settings[i]
        per.append(build_goc_graphs(pos[s:s + n], cell[i], pbc[i], tags[s:s + n], st, qint_tags))
    return collate_goc_graphs(per, natoms)
