"""Our own converted store (`openjmp.data.store`) read back as a source (for ``inspect`` or
re-conversion). Option ``split``: only that split. Items carry the stored split names."""

from __future__ import annotations

from collections.abc import Iterator

from openjmp.data.readers.base import Reader, ReaderItem


class StoreReader(Reader):
    name = "store"

    def __init__(self, path, *, split: str | None = None, **kw) -> None:
        kw.setdefault("validate", False)  # records were validated when the store was written
        super().__init__(path, **kw)
        from openjmp.data.store.dataset import StoreDataset

        self.data = StoreDataset(self.path, split=split)
        self.split = split
        self.skipped.update(self.data.meta.info.get("skipped", {}))

    def __len__(self) -> int:
        return len(self.data)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "split": self.split,
            "source": self.data.meta.info.get("provenance"),
        }

    def target_units(self) -> dict[str, str]:
        return dict(self.data.meta.info.get("target_units", {}))

    def _items(self) -> Iterator[ReaderItem]:
        meta = self.data.meta
        for i in range(len(self.data)):
            g = int(self.data.indices[i])
            yield ReaderItem(meta.split_name(g), self.data.get_raw(g))
