"""An allow-listing unpickler for fairchem-v1 / JMP LMDB values (pickled PyG ``Data``).

Only these globals resolve; anything else (``os.system``, ``builtins.eval``, arbitrary classes)
raises `pickle.UnpicklingError` before it can run:

- torch tensors: ``torch._utils._rebuild_tensor_v2`` and friends; ``torch.storage._load_from_bytes``
  is replaced by a loader that reads the nested storage with ``torch.load(weights_only=True)``;
  torch dtypes and ``torch.Size``;
- numpy arrays and scalars (``_reconstruct``, ``ndarray``, ``dtype``, ``scalar``);
- ``collections.OrderedDict``, ``copyreg._reconstructor`` (protocol 0/1 objects), a few
  harmless builtins;
- ``torch_geometric.data.data.Data`` (and its PyG-2 storage classes): replaced by the plain
  stand-ins below, so torch_geometric need not be installed.

`attributes(obj)` turns a loaded stand-in (PyG 1.x layout: attributes in ``__dict__``; PyG 2.x:
in ``__dict__["_store"]._mapping``) into a plain ``dict`` of numpy arrays / Python scalars.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np


class PygDataStandIn:
    """Receives the state of a pickled ``torch_geometric.data.Data`` (any PyG version)."""

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected Data state of type {type(state).__name__}")
        self.__dict__.update(state)


class PygStorageStandIn(PygDataStandIn):
    """Receives the state of ``torch_geometric.data.storage.GlobalStorage`` (PyG ≥ 2)."""


class PygAttrStandIn(PygDataStandIn):
    """Receives ``DataEdgeAttr`` / ``DataTensorAttr`` (PyG ≥ 2.3 bookkeeping objects)."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


def _safe_load_from_bytes(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def _allowed() -> dict[tuple[str, str], Any]:
    import collections
    import copyreg

    import torch
    import torch._utils

    table: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch.storage", "_load_from_bytes"): _safe_load_from_bytes,
        ("torch", "Size"): torch.Size,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("builtins", "object"): object,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("builtins", "slice"): slice,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("torch_geometric.data.data", "Data"): PygDataStandIn,
        ("torch_geometric.data", "Data"): PygDataStandIn,
        ("torch_geometric.data.storage", "GlobalStorage"): PygStorageStandIn,
        ("torch_geometric.data.data", "DataEdgeAttr"): PygAttrStandIn,
        ("torch_geometric.data.data", "DataTensorAttr"): PygAttrStandIn,
    }
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = multiarray._reconstruct
        table[(mod, "scalar")] = multiarray.scalar
    for mod in ("numpy.dtypes",):
        import numpy.dtypes as npd

        for name in dir(npd):
            if name.endswith("DType"):
                table[(mod, name)] = getattr(npd, name)
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            table[("torch", name)] = getattr(torch, name)
    import codecs

    table[("_codecs", "encode")] = codecs.encode  # bytes in protocol <= 2 pickles
    return {k: v for k, v in table.items() if v is not None}


_ALLOWED: dict | None = None


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        global _ALLOWED
        if _ALLOWED is None:
            _ALLOWED = _allowed()
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name} (not on the allow-list)"
            )
        return obj


def safe_loads(data: bytes):
    """Unpickle ``data`` through the allow-list. Raises `pickle.UnpicklingError` on anything else."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core alias warnings
        return SafeUnpickler(io.BytesIO(data)).load()


def to_plain(value):
    """torch tensors → numpy arrays; 0-d → Python scalars; containers unchanged."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def attributes(obj) -> dict[str, Any]:
    """Plain attribute dict of a loaded ``Data`` stand-in (PyG 1.x or 2.x layout)."""
    if isinstance(obj, dict):
        raw = obj
    elif isinstance(obj, PygDataStandIn):
        raw = obj.__dict__
        store = raw.get("_store")
        if store is not None:
            raw = store.__dict__.get("_mapping", store.__dict__)
    else:
        raise pickle.UnpicklingError(
            f"expected a pickled torch_geometric Data object, got {type(obj).__name__}"
        )
    return {
        k: to_plain(v)
        for k, v in raw.items()
        if v is not None and not k.startswith("_") and not (k.startswith("__") and k.endswith("__"))
    }
