"""Data layer: records, readers, graphs, normalisation, sampling. Knows nothing about models."""

from openjmp.data.collate import Batch, collate
from openjmp.data.record import AtomsRecord, InvalidStructureError

__all__ = ["AtomsRecord", "Batch", "InvalidStructureError", "collate"]
