"""The canonical training store: sharded LMDB + metadata (see `layout`), writer and Dataset."""

from openjmp.data.store.codec import decode_record, encode_record
from openjmp.data.store.dataset import StoreDataset, StoreMetadata
from openjmp.data.store.layout import is_store
from openjmp.data.store.writer import convert

__all__ = ["StoreDataset", "StoreMetadata", "convert", "decode_record", "encode_record", "is_store"]
