"""Binary encoding of one `AtomsRecord` for the store: no pickle, lossless.

Layout: ``b"OJR1"`` + uint32 little-endian header length + UTF-8 JSON header + raw array bytes.
The header holds scalars (``energy``, scalar targets, ``source``, ``dataset``, ``pbc``) — JSON
writes floats with ``repr``, which round-trips every float64 exactly — and, per array, its
name, dtype, shape and byte offset. Arrays are stored in the narrowest dtype that gives back
the same values exactly (float32 when a float64 array holds only float32-representable values,
uint8 atomic numbers, small ints for tags); decoding widens them again to the record's dtypes,
so a round trip is bit-equal.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from openjmp.data.record import AtomsRecord

MAGIC = b"OJR1"
_ARRAY_FIELDS = ("atomic_numbers", "positions", "cell", "forces", "stress", "tags", "fixed")


def _narrow(a: np.ndarray) -> np.ndarray:
    """Smallest dtype holding exactly the same values."""
    if a.dtype == np.float64:
        f32 = a.astype(np.float32)
        if np.array_equal(f32.astype(np.float64), a, equal_nan=True):
            return f32
        return a
    if a.dtype.kind in "iu" and a.size:
        lo, hi = int(a.min()), int(a.max())
        for dt in (np.uint8, np.int8, np.int16, np.int32):
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                return a.astype(dt)
    return a


def encode_record(record: AtomsRecord) -> bytes:
    arrays: list[tuple[str, np.ndarray]] = []
    for name in _ARRAY_FIELDS:
        value = getattr(record, name)
        if value is not None:
            arrays.append((name, _narrow(np.ascontiguousarray(value))))
    targets: dict[str, float] = {}
    for key, value in record.targets.items():
        if isinstance(value, np.ndarray):
            arrays.append((f"t:{key}", _narrow(np.ascontiguousarray(value, dtype=np.float64))))
        else:
            targets[key] = float(value)
    offset = 0
    meta = []
    for name, a in arrays:
        meta.append([name, a.dtype.str, list(a.shape), offset])
        offset += a.nbytes
    header = json.dumps(
        {
            "a": meta,
            "e": record.energy,
            "t": targets,
            "s": record.source,
            "d": record.dataset,
            "p": [bool(x) for x in record.pbc],
        },
        separators=(",", ":"),
    ).encode("utf-8")
    return b"".join(
        [MAGIC, struct.pack("<I", len(header)), header, *(a.tobytes() for _, a in arrays)]
    )


def decode_record(data: bytes, where: str = "") -> AtomsRecord:
    if data[:4] != MAGIC:
        raise ValueError(f"{where}: not an openjmp record (bad magic {data[:4]!r})")
    (n,) = struct.unpack_from("<I", data, 4)
    header = json.loads(bytes(data[8 : 8 + n]).decode("utf-8"))
    body = memoryview(data)[8 + n :]
    fields: dict = {}
    targets = dict(header["t"])
    for name, dtype, shape, offset in header["a"]:
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        a = np.frombuffer(body, dtype=dt, count=count, offset=offset).reshape(shape)
        if dt.kind == "f":
            a = a.astype(np.float64)
        elif dt.kind in "iu":
            a = a.astype(np.int64)
        else:
            a = a.copy()
        if name.startswith("t:"):
            targets[name[2:]] = a
        else:
            fields[name] = a
    return AtomsRecord(
        atomic_numbers=fields["atomic_numbers"],
        positions=fields["positions"],
        cell=fields.get("cell", np.zeros((3, 3))),
        pbc=np.asarray(header["p"], dtype=bool),
        energy=header["e"],
        forces=fields.get("forces"),
        stress=fields.get("stress"),
        targets=targets,
        tags=fields.get("tags"),
        fixed=fields.get("fixed"),
        source=header["s"],
        dataset=header["d"],
    )
