"""From records to model-ready batches: graph building (cached), collation, task indices.

``GraphDataset`` wraps a list of records of one dataset (task) with its graph settings; it builds
the four GemNet-OC graphs of a record once and caches them (positions never change during
training). ``StoreGraphDataset`` does the same for records of a converted store read on demand
(nothing cached: for datasets too large for memory). ``collate_graph_batch`` turns samples of
any mix of datasets into a `GraphBatch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from openjmp.data.collate import Batch, collate
from openjmp.data.graphs.goc import (
    EdgeSet,
    GOCGraphs,
    GOCGraphSettings,
    build_goc_graphs,
    collate_goc_graphs,
)
from openjmp.data.record import AtomsRecord


@dataclass
class GraphBatch:
    """A collated batch with its GemNet-OC graphs and the task (dataset) of every structure."""

    data: Batch
    graphs: GOCGraphs
    task_index: torch.Tensor  # (B,) long

    def to(self, device=None, dtype: torch.dtype | None = None) -> GraphBatch:
        return GraphBatch(self.data.to(device, dtype), self.graphs.to(device), self.task_index.to(device))

    @property
    def num_structures(self) -> int:
        return self.data.num_structures


class GraphDataset(Dataset):
    """Records of one task with cached graphs. Items: (record, graphs, task_index)."""

    def __init__(
        self,
        records: Sequence[AtomsRecord],
        settings: GOCGraphSettings,
        task_index: int = 0,
        qint_tags: Sequence[int] = (1, 2),
        cache: bool = True,
        force_pbc: bool | None = None,
    ) -> None:
        self.records = list(records)
        self.settings = settings
        self.task_index = task_index
        self.qint_tags = tuple(qint_tags)
        self.force_pbc = force_pbc
        self._cache: dict[int, GOCGraphs] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def natoms(self) -> list[int]:
        return [r.natoms for r in self.records]

    def graphs(self, index: int) -> GOCGraphs:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        g = record_graphs(self.records[index], self.settings, self.qint_tags, self.force_pbc)
        if self._cache is not None:
            self._cache[index] = g
        return g

    def __getitem__(self, index: int):
        return self.records[index], self.graphs(index), self.task_index


def record_graphs(record: AtomsRecord, settings: GOCGraphSettings, qint_tags: Sequence[int],
                  force_pbc: bool | None = None) -> GOCGraphs:
    """The four GemNet-OC graphs of one record (``force_pbc`` overrides the record's pbc)."""
    pbc = record.pbc if force_pbc is None else np.array([force_pbc] * 3)
    tags = record.tags if record.tags is not None else [2] * record.natoms
    return build_goc_graphs(record.positions, record.cell, pbc, tags, settings, tuple(qint_tags))


class StoreGraphDataset(Dataset):
    """Records of one task read lazily from a converted store; graphs built in ``__getitem__``.

    Items: (record, graphs, task_index), as `GraphDataset`. Nothing is cached, so memory does not
    grow with the dataset; sizes and atom counts come from the store metadata without reading
    records. Safe in DataLoader workers (`StoreDataset` opens LMDB once per process).

    Args:
        store: a `StoreDataset` whose ``indices`` are this dataset's records (in order).
    """

    def __init__(self, store, settings: GOCGraphSettings, task_index: int = 0,
                 qint_tags: Sequence[int] = (1, 2), force_pbc: bool | None = None) -> None:
        self.store = store
        self.settings = settings
        self.task_index = task_index
        self.qint_tags = tuple(qint_tags)
        self.force_pbc = force_pbc

    def __len__(self) -> int:
        return len(self.store)

    @property
    def natoms(self) -> np.ndarray:
        """(len,) atoms per record, from the store metadata."""
        return np.asarray(self.store.natoms, dtype=np.int64)

    def record(self, index: int) -> AtomsRecord:
        return self.store[index]

    def graphs(self, index: int) -> GOCGraphs:
        return record_graphs(self.store[index], self.settings, self.qint_tags, self.force_pbc)

    def __getitem__(self, index: int):
        record = self.store[index]
        return record, record_graphs(record, self.settings, self.qint_tags, self.force_pbc), self.task_index


def collate_graph_batch(samples, dtype: torch.dtype = torch.float64) -> GraphBatch:
    records = [s[0] for s in samples]
    data = collate(records, dtype=dtype)
    graphs = collate_goc_graphs([s[1] for s in samples], [r.natoms for r in records])
    task_index = torch.tensor([int(s[2]) for s in samples], dtype=torch.long)
    return GraphBatch(data, graphs, task_index)


def drop_edges(graphs: GOCGraphs, graph: str, p: float, generator: torch.Generator) -> GOCGraphs:
    """Edge dropout: remove each edge of ``graph`` with probability ``p`` (training only)."""
    if p <= 0:
        return graphs
    edges = getattr(graphs, graph)
    keep = torch.rand(edges.num_edges, generator=generator) >= p
    new = EdgeSet(edges.edge_index[:, keep.to(edges.edge_index.device)], edges.cell_offset[keep.to(edges.cell_offset.device)])
    return GOCGraphs(**{**{n: getattr(graphs, n) for n in ("main", "a2a", "a2ee2a", "qint")}, graph: new})
