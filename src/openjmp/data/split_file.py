"""``splits.json``: which records a fine-tuning run trained, validated and tested on.

`openjmp finetune` writes it into its output folder; ``openjmp evaluate --split test`` and
``openjmp data export --splits FILE --split test`` read it to select exactly those records again
(by source id), also when the source itself defines no splits (a plain extxyz file split by
seed). The data source is named portably (``asset://...`` or relative to the file's folder).

Format (version 1)::

    {"format_version": 1, "kind": "openjmp-splits",
     "source": {"path": "asset://mini/...npz", "format": "rmd17", "reader_options": {...}},
     "seed": 0, "splits": {"train": ["rmd17_ethanol.npz#12", ...], "val": [...], "test": [...]}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openjmp.data.record import AtomsRecord

FILE_NAME = "splits.json"
FORMAT_VERSION = 1
KIND = "openjmp-splits"


class SplitFileError(ValueError):
    """A splits file is unreadable, of an unknown version, or does not match the data."""


@dataclass
class SplitFile:
    """Record ids per split, and the source they were read from.

    Attributes:
        source_path: the source as written in the file (``asset://...``, or relative to the
            file's folder); `source` gives the resolved path.
        source_format: reader format name, or None (detected).
        reader_options: options the reader was given.
        seed: seed of the split assignment (provenance only).
        splits: split name → source ids, in record order.
        folder: folder the file lives in (set when read / written; resolves ``source_path``).
    """

    source_path: str
    source_format: str | None
    reader_options: dict[str, Any]
    seed: int | None
    splits: dict[str, list[str]]
    folder: Path = field(default=Path("."), compare=False)

    @classmethod
    def from_records(cls, source, source_format, reader_options, seed, splits: dict[str, Sequence[AtomsRecord]],
                     folder) -> SplitFile:
        """Build from the records of each split; ``source`` is the source's path on this machine."""
        from openjmp.assets import portable_path

        ids = {name: [r.source for r in records] for name, records in splits.items()}
        every = [i for values in ids.values() for i in values]
        if not all(every):
            raise SplitFileError("some records have no source id; cannot list them in a splits file")
        if len(set(every)) != len(every):
            raise SplitFileError("source ids are not unique; cannot list records in a splits file")
        return cls(portable_path(source, folder), source_format, dict(reader_options), seed, ids, Path(folder))

    @property
    def source(self) -> Path:
        from openjmp.assets import resolve_portable

        return resolve_portable(self.source_path, self.folder)

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "kind": KIND,
                "source": {"path": self.source_path, "format": self.source_format,
                           "reader_options": self.reader_options},
                "seed": self.seed, "splits": self.splits}

    def write(self, path) -> Path:
        """Atomic write (temp file, then rename), mode 0644."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.chmod(tmp, 0o644)
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path) -> SplitFile:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SplitFileError(f"{path}: no such splits file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SplitFileError(f"{path}: not a readable splits file ({type(exc).__name__}: {exc})") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise SplitFileError(f"{path}: not an openjmp splits file (no \"kind\": \"{KIND}\")")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise SplitFileError(f"{path}: splits file format_version {version!r}; this openjmp reads "
                                 f"version {FORMAT_VERSION}")
        try:
            source = data["source"]
            splits = {str(k): [str(i) for i in v] for k, v in data["splits"].items()}
            return cls(str(source["path"]), source.get("format"), dict(source.get("reader_options") or {}),
                       data.get("seed"), splits, path.parent)
        except (KeyError, TypeError, AttributeError) as exc:
            raise SplitFileError(f"{path}: malformed splits file ({type(exc).__name__}: {exc})") from None

    def select(self, records: Iterable[AtomsRecord], name: str, where: str = "the data") -> list[AtomsRecord]:
        """The records of split ``name``, in the file's order; every listed id must be found."""
        if name not in self.splits:
            raise SplitFileError(f"split {name!r} is not in the splits file (it has "
                                 f"{', '.join(f'{k} {len(v)}' for k, v in self.splits.items())})")
        wanted = {i: k for k, i in enumerate(self.splits[name])}
        found: list[AtomsRecord | None] = [None] * len(wanted)
        for record in records:
            k = wanted.get(record.source)
            if k is not None:
                found[k] = record
        missing = [i for i, r in zip(self.splits[name], found) if r is None]
        if missing:
            raise SplitFileError(f"{len(missing)} of {len(wanted)} {name} records of the splits file are not in "
                                 f"{where} (first missing id: {missing[0]}); is it the source the run used "
                                 f"({self.source_path})?")
        return found  # type: ignore[return-value]
