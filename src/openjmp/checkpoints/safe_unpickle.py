"""Restricted unpickling of checkpoints written by other projects (Lightning, JMP).

A published JMP checkpoint is a full PyTorch-Lightning checkpoint: besides tensors it pickles the
original project's config objects (``hyper_parameters``), Lightning's loop/callback state and
possibly ``argparse``/``omegaconf``/``pydantic`` objects. Unpickling such a file with plain
``pickle`` would import those modules and call whatever the file names -- including ``os.system``.
This module unpickles it without running anything the file chooses.

Policy for every global ``module.name`` the pickle refers to (the ONLY way a pickle can reach a
callable is by naming a global, so this is the single gate):

1. **materialised** -- a short allow-list of plain-data constructors: tensor/parameter rebuilders
   from ``torch._utils`` (wrapped: backward hooks and Python state must be empty), storages,
   dtypes, ``torch.Size``/``torch.device``; ``OrderedDict``/``Counter``/``deque``/``defaultdict``;
   builtin containers and numbers, ``type(x)``; ``bytes`` via ``_codecs.encode`` (latin-1
   only); numpy arrays, scalars and dtypes; ``datetime`` values; ``pathlib`` paths (as *pure* paths, which never touch
   the file system); and ``copyreg``/``getattr``/``operator.getitem`` helpers rewritten so that
   they only ever act on placeholders.
2. **placeholder** -- any other class from outside the standard library, torch and numpy (the
   original project's configs, ``lightning``, ``omegaconf``, ``pydantic``, a class defined in some
   script), plus a few inert standard-library record types (``argparse.Namespace``,
   ``types.SimpleNamespace``, ``enum``, ``typing`` forms, ``uuid.UUID``, ``decimal``,
   ``fractions``). The module is never imported; the name becomes a :class:`PlaceholderGlobal`,
   which is *not callable*. When the pickle "calls" or "constructs" it, the unpickler itself
   records the arguments and the state in an inert :class:`PlaceholderObject`. :func:`to_plain_data` turns those into plain dicts.
   Classes of torch and numpy outside the allow-list (an optimizer or LR-scheduler object that
   Lightning pickled into ``lr_schedulers``, a module class) are placeholders too.
3. **refused** -- every other global of the standard library (``os.system``, ``builtins.eval``,
   ``subprocess.Popen``, ``functools.partial``, ``operator.attrgetter``, ...), the *functions*
   of torch and numpy (``torch.load``, ``torch.hub.load``, ``numpy.load``, ...), and known
   code-shipping libraries (``dill``, ``cloudpickle``, ``joblib``): loading stops with
   :class:`UnsafeCheckpointError` naming the global, before anything is called.

The opcodes that act on objects are restricted as well: REDUCE / NEWOBJ / INST / OBJ only call
allow-listed callables (or record placeholders), BUILD only sets state on placeholders, numpy
arrays/dtypes and legacy tensors, SETITEM(S) / APPEND(S) / ADDITEMS only fill real containers or
placeholders, and extension codes (EXT1/2/4) are refused.

Why not ``torch.load(weights_only=True)`` with ``torch.serialization.add_safe_globals``? Torch
2.13's weights-only unpickler accepts ``(substitute, "module.Name")`` pairs, so placeholders could
be plugged in after a pre-scan of the globals (``get_unsafe_globals_in_checkpoint``). But it only
implements the protocol-2 opcode subset, and it refuses SETITEMS/APPENDS on anything but exact
``dict``/``list``/``OrderedDict``/``Counter`` -- so a placeholder cannot stand in for a dict- or
list-subclass (Lightning's ``AttributeDict``, many config classes), and the load fails on exactly
the files this is for. Instead this module provides a pickle *module* (``Unpickler`` + ``load``)
built on the pure-Python ``pickle._Unpickler`` (every opcode overridable) and passes it to
``torch.load(..., pickle_module=this_module, weights_only=False)``: torch keeps doing the file
format (zip and legacy, storages, ``map_location``, ``mmap``) and every object goes through the
policy above. ``weights_only=False`` is safe here because the unpickler *is* the allow-list
(torch's own ``find_class`` hook only maps legacy ``*Storage`` names to inert dtype holders).

Use :func:`load_checkpoint_file` (it also turns truncated/corrupt files into clear errors).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import datetime
import functools
import io
import pathlib
import pickle
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openjmp.checkpoints.errors import CheckpointError, CheckpointReadError, UnsafeCheckpointError

__all__ = [
    "PlaceholderGlobal",
    "PlaceholderObject",
    "Unpickler",
    "load",
    "loads",
    "load_checkpoint_file",
    "to_plain_data",
    "find_placeholders",
]


# --------------------------------------------------------------------------------------------
# Placeholders
# --------------------------------------------------------------------------------------------


class PlaceholderGlobal:
    """Stands for a global ``module.name`` that was NOT imported. Not callable, no attributes."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PlaceholderGlobal)
            and (other.module, other.name) == (self.module, self.name)
        )

    def __hash__(self) -> int:
        return hash((PlaceholderGlobal, self.module, self.name))

    def __repr__(self) -> str:
        return f"<placeholder for {self.qualname}>"


class PlaceholderObject:
    """An inert record of an object of a class that was never imported or instantiated.

    ``cls`` is the :class:`PlaceholderGlobal`; ``how`` says how the pickle built it ("call" for
    REDUCE, "new" for NEWOBJ, "getattr" for a by-name reference such as an enum member);
    ``args``/``kwargs`` are the arguments the pickle gave; ``state`` is what BUILD passed (a
    pydantic model's ``__getstate__`` dict, a dataclass's ``__dict__``, ...); ``dict_items`` /
    ``list_items`` / ``set_items`` hold what the pickle inserted (dict/list/set subclasses).
    """

    __slots__ = ("cls", "how", "args", "kwargs", "state", "dict_items", "list_items", "set_items")

    def __init__(self, cls: PlaceholderGlobal, how: str, args: tuple = (), kwargs: dict | None = None):
        self.cls = cls
        self.how = how
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.state: Any = None
        self.dict_items: dict = {}
        self.list_items: list = []
        self.set_items: list = []

    @property
    def qualname(self) -> str:
        return self.cls.qualname

    def fields(self) -> dict[str, Any]:
        """The object's data as one dict (not recursively converted; see :func:`to_plain_data`)."""
        out: dict[str, Any] = {}
        state = self.state
        if (
            isinstance(state, tuple)
            and len(state) == 2
            and (state[0] is None or isinstance(state[0], dict))
            and isinstance(state[1], dict)
        ):  # (dict state, slot state)
            out.update(state[0] or {})
            out.update(state[1])
        elif isinstance(state, dict):
            inner = state.get("__dict__")
            is_pydantic = any(
                isinstance(k, str) and (k.startswith("__pydantic") or k == "__fields_set__")
                for k in state
            )
            if is_pydantic and isinstance(inner, dict):
                out.update(inner)
                extra = state.get("__pydantic_extra__")
                if isinstance(extra, dict):
                    out.update(extra)
            else:
                out.update(state)
        elif state is not None:
            out["__state__"] = state
        out.update(self.dict_items)
        if self.list_items:
            out["__items__"] = list(self.list_items)
        if self.set_items:
            out["__set_items__"] = list(self.set_items)
        if self.args:
            out["__args__"] = list(self.args)
        if self.kwargs:
            out["__kwargs__"] = dict(self.kwargs)
        return out

    def __repr__(self) -> str:
        return f"<placeholder {self.qualname} ({self.how}) fields={sorted(map(str, self.fields()))}>"


# --------------------------------------------------------------------------------------------
# Allow-list
# --------------------------------------------------------------------------------------------


def _refuse(what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"refusing to load: the pickle {what}. Only tensors, storages, containers, numbers, "
        "strings and inert placeholders for unknown classes are allowed; nothing from the file "
        "was executed. Do not load this file with plain torch.load/pickle unless you trust it."
    )


def _check_no_hooks(backward_hooks: Any, where: str) -> None:
    if backward_hooks:
        raise _refuse(f"attaches backward hooks to a tensor ({where})")


def _safe_rebuild_tensor(storage, storage_offset, size, stride):
    return torch._utils._rebuild_tensor(storage, storage_offset, size, stride)


def _safe_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    _check_no_hooks(backward_hooks, "_rebuild_tensor_v2")
    if metadata is not None and not isinstance(metadata, dict):
        raise _refuse("passes non-dict tensor metadata")
    return torch._utils._rebuild_tensor_v2(
        storage, storage_offset, size, stride, requires_grad, collections.OrderedDict(), metadata
    )


def _safe_rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    _check_no_hooks(backward_hooks, "_rebuild_tensor_v3")
    if metadata is not None and not isinstance(metadata, dict):
        raise _refuse("passes non-dict tensor metadata")
    return torch._utils._rebuild_tensor_v3(
        storage, storage_offset, size, stride, requires_grad, collections.OrderedDict(), dtype, metadata
    )


def _safe_rebuild_parameter(data, requires_grad, backward_hooks):
    _check_no_hooks(backward_hooks, "_rebuild_parameter")
    if not isinstance(data, torch.Tensor):
        raise _refuse(f"rebuilds a parameter from a {type(data).__name__}")
    return torch._utils._rebuild_parameter(data, requires_grad, collections.OrderedDict())


def _safe_rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    _check_no_hooks(backward_hooks, "_rebuild_parameter_with_state")
    if state:
        raise _refuse("sets Python attributes on a parameter (_rebuild_parameter_with_state)")
    return _safe_rebuild_parameter(data, requires_grad, collections.OrderedDict())


def _safe_rebuild_device_tensor_from_cpu_tensor(data, dtype, device, requires_grad):
    if not isinstance(data, torch.Tensor):
        raise _refuse("rebuilds a device tensor from a non-tensor")
    return torch._utils._rebuild_device_tensor_from_cpu_tensor(data, dtype, device, requires_grad)


def _safe_rebuild_device_tensor_from_numpy(data, dtype, device, requires_grad):
    if not isinstance(data, np.ndarray):
        raise _refuse("rebuilds a device tensor from a non-array")
    return torch._utils._rebuild_device_tensor_from_numpy(data, dtype, device, requires_grad)


def _safe_rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad):
    return torch._utils._rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad)


_TENSOR_REBUILDERS = (
    _safe_rebuild_tensor,
    _safe_rebuild_tensor_v2,
    _safe_rebuild_tensor_v3,
    _safe_rebuild_parameter,
    _safe_rebuild_parameter_with_state,
    _safe_rebuild_device_tensor_from_cpu_tensor,
    _safe_rebuild_device_tensor_from_numpy,
    _safe_rebuild_meta_tensor_no_storage,
)


def _safe_rebuild_from_type_v2(func, new_type, args, state):
    if func not in _TENSOR_REBUILDERS:
        raise _refuse(f"rebuilds a tensor through {func!r}")
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        raise _refuse(f"rebuilds a tensor as type {new_type!r}")
    if state:
        raise _refuse("sets Python attributes on a tensor (_rebuild_from_type_v2)")
    ret = func(*args)
    if type(ret) is not new_type:
        ret = ret.as_subclass(new_type)
    return ret


def _safe_encode(text, encoding="utf-8", errors="strict"):
    # protocol 2 stores bytes as _codecs.encode(str, "latin1"); nothing else is data
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") not in ("latin1", "utf8"):
        raise _refuse(f"calls _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding, errors)


def _safe_getattr(obj, name, *default):
    # Python pickles some objects (enum members, nested classes) as getattr(cls, "NAME").
    if isinstance(obj, PlaceholderGlobal) and isinstance(name, str):
        return PlaceholderObject(obj, "getattr", (name,))
    raise _refuse(f"calls getattr({obj!r}, {name!r}) on something that is not a placeholder")


def _safe_getitem(container, item):
    # typing annotations pickle as operator.getitem(typing.Optional, int): keep them as records
    if isinstance(container, (PlaceholderGlobal, PlaceholderObject)):
        return PlaceholderObject(PlaceholderGlobal("operator", "getitem"), "call", (container, item))
    raise _refuse(f"calls operator.getitem on {_describe(container)}")


def _safe_type(*args):
    # type(None) is how protocol 2 spells NoneType; the 3-argument form would build a class
    if len(args) != 1:
        raise _refuse("creates a class with type(name, bases, dict)")
    return type(args[0])


def _construct(cls, args: tuple, kwargs: dict | None, how: str):
    """NEWOBJ-style construction: placeholders are recorded, allow-listed types are created."""
    if isinstance(cls, PlaceholderGlobal):
        return PlaceholderObject(cls, how, args, kwargs)
    if isinstance(cls, type) and id(cls) in _allowed_ids():
        return cls.__new__(cls, *args, **(kwargs or {}))
    raise _refuse(f"constructs {_describe(cls)}")


def _safe_reconstructor(cls, base, state):
    # copyreg._reconstructor: protocol 0/1 form of "object of class cls"
    obj = _construct(cls, (), None, "new")
    if isinstance(obj, PlaceholderObject) and state is not None:
        obj.args = (state,)
    return obj


def _safe_newobj(cls, *args):
    return _construct(cls, args, None, "new")


def _safe_newobj_ex(cls, args, kwargs):
    return _construct(cls, tuple(args), dict(kwargs), "new")


_SAFE_DEFAULT_FACTORIES = (None, list, dict, set, int, float, str, tuple)


def _safe_defaultdict(default_factory=None, *args):
    # Keep the data; drop a factory that is not a plain container type.
    factory = default_factory if default_factory in _SAFE_DEFAULT_FACTORIES else None
    return collections.defaultdict(factory, *args)


def _safe_numpy_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise _refuse(f"reconstructs a numpy array of type {subtype!r}")
    return _numpy_multiarray()._reconstruct(np.ndarray, shape, dtype)


def _safe_numpy_scalar(dtype, obj=None):
    if not isinstance(dtype, np.dtype):
        raise _refuse("builds a numpy scalar without a dtype")
    return _numpy_multiarray().scalar(dtype, obj)


def _safe_numpy_dtype(spec, align=False, copy=False):
    if not isinstance(spec, (str, np.dtype)):
        raise _refuse(f"builds a numpy dtype from {type(spec).__name__}")
    return np.dtype(spec, align, copy)


def _numpy_multiarray():
    core = getattr(np, "_core", None) or np.core
    return core.multiarray


# standard-library record types that are harmless to *represent* (never imported or called)
_INERT_STDLIB_GLOBALS = {
    "argparse.Namespace",
    "types.SimpleNamespace",
    "uuid.UUID",
    "uuid.SafeUUID",
    "decimal.Decimal",
    "fractions.Fraction",
    "ipaddress.IPv4Address",
    "ipaddress.IPv6Address",
    "types.GenericAlias",
    "types.UnionType",
}
# enum members; typing special forms (omegaconf metadata and pydantic configs can hold them)
_INERT_STDLIB_MODULES = {"enum", "typing"}

# torch / numpy: class names (Capitalised last component, e.g. an optimizer or LR scheduler
# object that Lightning pickled into ``lr_schedulers``) become placeholders so that such files
# still load; their functions (``torch.load``, ``numpy.load``, ``torch.hub.load``, ...) are refused.
_CLASS_PLACEHOLDER_TOP_MODULES = {"torch", "numpy"}

# libraries whose globals are refused outright unless allow-listed (they ship or run code)
_REFUSED_TOP_MODULES = {
    "dill",
    "cloudpickle",
    "joblib",
    "__builtin__",
    "copy_reg",
    "commands",
    "nt",
    "posix",
}


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict[str, Any]:
    allowed: dict[str, Any] = {}
    for t in (set, frozenset, complex, bytearray, slice, range, list, dict, tuple, int, float,
              str, bytes, bool, object):
        allowed[f"builtins.{t.__name__}"] = t
    allowed["builtins.getattr"] = _safe_getattr
    allowed["builtins.type"] = _safe_type
    allowed["_operator.getitem"] = _safe_getitem
    allowed["operator.getitem"] = _safe_getitem
    allowed["_codecs.encode"] = _safe_encode
    allowed["copyreg._reconstructor"] = _safe_reconstructor
    allowed["copyreg.__newobj__"] = _safe_newobj
    allowed["copyreg.__newobj_ex__"] = _safe_newobj_ex
    allowed["collections.OrderedDict"] = collections.OrderedDict
    allowed["collections.Counter"] = collections.Counter
    allowed["collections.deque"] = collections.deque
    allowed["collections.defaultdict"] = _safe_defaultdict
    for name in ("datetime", "date", "time", "timedelta", "timezone"):
        allowed[f"datetime.{name}"] = getattr(datetime, name)
    # concrete paths become pure paths: same data, no file-system methods
    allowed["pathlib.PurePath"] = pathlib.PurePath
    allowed["pathlib.PurePosixPath"] = pathlib.PurePosixPath
    allowed["pathlib.PureWindowsPath"] = pathlib.PureWindowsPath
    allowed["pathlib.Path"] = pathlib.PurePath
    allowed["pathlib.PosixPath"] = pathlib.PurePosixPath
    allowed["pathlib.WindowsPath"] = pathlib.PureWindowsPath

    # torch: dtypes, tensor/storage types, rebuild functions
    for dtype in set(torch.storage._dtype_to_storage_type_map()) | set(torch.storage._new_dtypes()):
        allowed[str(dtype)] = dtype
    for bits in range(1, 8):
        for prefix in ("uint", "int"):
            dtype = getattr(torch, f"{prefix}{bits}", None)
            if dtype is not None:
                allowed[str(dtype)] = dtype
    allowed["torch.Size"] = torch.Size
    allowed["torch.device"] = torch.device
    allowed["torch.Tensor"] = torch.Tensor
    allowed["torch.nn.parameter.Parameter"] = torch.nn.Parameter
    allowed["torch.storage.UntypedStorage"] = torch.storage.UntypedStorage
    allowed["torch.storage.TypedStorage"] = torch.storage.TypedStorage
    allowed["torch.serialization._get_layout"] = torch.serialization._get_layout
    for storage_cls in torch._storage_classes:
        if storage_cls not in (torch.storage.TypedStorage, torch.storage.UntypedStorage):
            allowed[f"{storage_cls.__module__}.{storage_cls.__name__}"] = (
                torch.serialization.StorageType(storage_cls.__name__)
            )
    for func in _TENSOR_REBUILDERS:
        allowed[f"torch._utils.{func.__name__.removeprefix('_safe')}"] = func
    allowed["torch._tensor._rebuild_from_type_v2"] = _safe_rebuild_from_type_v2

    # numpy arrays, scalars, dtypes (numpy 1 and 2 module names)
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{core}._reconstruct"] = _safe_numpy_reconstruct
        allowed[f"{core}.scalar"] = _safe_numpy_scalar
    allowed["numpy.dtype"] = _safe_numpy_dtype
    allowed["numpy.ndarray"] = np.ndarray
    return allowed


@functools.lru_cache(maxsize=1)
def _allowed_ids() -> frozenset[int]:
    return frozenset(id(v) for v in _allowed_globals().values() if callable(v))


def _describe(obj: Any) -> str:
    if isinstance(obj, PlaceholderObject):
        return f"a placeholder object of {obj.qualname}"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    module = getattr(obj, "__module__", None)
    if name and module:
        return f"{module}.{name}"
    return f"an object of type {type(obj).__name__}"


def classify_global(module: str, name: str) -> Any:
    """Resolve ``module.name`` under the policy: allowed object, placeholder, or raise."""
    full = f"{module}.{name}"
    allowed = _allowed_globals()
    if full in allowed:
        return allowed[full]
    top = module.split(".", 1)[0]
    if full in _INERT_STDLIB_GLOBALS or top in _INERT_STDLIB_MODULES:
        return PlaceholderGlobal(module, name)
    if top in _CLASS_PLACEHOLDER_TOP_MODULES:
        if name.rsplit(".", 1)[-1][:1].isupper():
            return PlaceholderGlobal(module, name)
        raise _refuse(f"references {full}, a callable that is not plain data")
    if top in _REFUSED_TOP_MODULES or top in sys.stdlib_module_names:
        raise _refuse(f"references {full}, a callable that is not plain data")
    return PlaceholderGlobal(module, name)


# --------------------------------------------------------------------------------------------
# The unpickler
# --------------------------------------------------------------------------------------------


class Unpickler(pickle._Unpickler):
    """Pure-Python unpickler that enforces the module policy on every global and object op."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise _refuse("names a global with a non-string module or name")
        if self.proto < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        return classify_global(module, name)

    def _read_name_line(self) -> str:
        line = self.readline()
        if not line.endswith(b"\n"):
            # a file cut inside a GLOBAL/INST name: report truncation, not a strange global
            raise EOFError("pickle data ends inside a global name")
        return line[:-1].decode("utf-8")

    def load_global(self) -> None:
        module = self._read_name_line()
        name = self._read_name_line()
        self.append(self.find_class(module, name))

    dispatch[pickle.GLOBAL[0]] = load_global

    def load_inst(self) -> None:
        module = self._read_name_line()
        name = self._read_name_line()
        klass = self.find_class(module, name)
        self._instantiate(klass, self.pop_mark())

    dispatch[pickle.INST[0]] = load_inst

    # -- calls -----------------------------------------------------------------------------
    def _call(self, func: Any, args: Any) -> Any:
        if not isinstance(args, (tuple, list)):
            raise _refuse(f"calls {_describe(func)} with malformed arguments")
        args = tuple(args)
        if isinstance(func, PlaceholderGlobal):
            return PlaceholderObject(func, "call", args)
        if id(func) in _allowed_ids():
            return func(*args)
        raise _refuse(f"calls {_describe(func)}")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def _instantiate(self, klass: Any, args: list) -> None:  # INST and OBJ
        self.append(self._call(klass, tuple(args)))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(_construct(cls, tuple(args), None, "new"))

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(_construct(cls, tuple(args), dict(kwargs), "new"))

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def _refuse_extension(self) -> None:
        raise _refuse("uses a copyreg extension code (EXT opcode)")

    dispatch[pickle.EXT1[0]] = _refuse_extension
    dispatch[pickle.EXT2[0]] = _refuse_extension
    dispatch[pickle.EXT4[0]] = _refuse_extension

    # -- state -----------------------------------------------------------------------------
    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, PlaceholderObject):
            inst.state = state
        elif isinstance(inst, (np.ndarray, np.dtype)):
            inst.__setstate__(state)
        elif type(inst) is torch.Tensor and isinstance(state, tuple):
            inst.set_(*state)  # legacy tensor pickles
        elif type(inst) is collections.OrderedDict and isinstance(state, dict):
            inst.__dict__.update(state)
        else:
            raise _refuse(f"sets the state of {_describe(inst)} (BUILD)")

    dispatch[pickle.BUILD[0]] = load_build

    # -- container filling ----------------------------------------------------------------------
    def load_append(self) -> None:
        value = self.stack.pop()
        self._extend(self.stack[-1], [value])

    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._extend(self.stack[-1], items)

    dispatch[pickle.APPENDS[0]] = load_appends

    def _extend(self, target: Any, items: list) -> None:
        if isinstance(target, list):
            target.extend(items)
        elif isinstance(target, collections.deque):
            target.extend(items)
        elif isinstance(target, PlaceholderObject):
            target.list_items.extend(items)
        else:
            raise _refuse(f"appends to {_describe(target)}")

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items(self.stack[-1], [key, value])

    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self) -> None:
        items = self.pop_mark()
        self._set_items(self.stack[-1], items)

    dispatch[pickle.SETITEMS[0]] = load_setitems

    def _set_items(self, target: Any, items: list) -> None:
        if isinstance(target, dict):
            store = target
        elif isinstance(target, PlaceholderObject):
            store = target.dict_items
        else:
            raise _refuse(f"sets items on {_describe(target)}")
        for i in range(0, len(items), 2):
            store[items[i]] = items[i + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if isinstance(target, set):
            target.update(items)
        elif isinstance(target, PlaceholderObject):
            target.set_items.extend(items)
        else:
            raise _refuse(f"adds set items to {_describe(target)}")

    dispatch[pickle.ADDITEMS[0]] = load_additems


def load(file, **kwargs) -> Any:
    """``pickle.load`` under the policy (torch's legacy format calls this for its headers)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs) -> Any:
    return load(io.BytesIO(data), **kwargs)


# --------------------------------------------------------------------------------------------
# File loading
# --------------------------------------------------------------------------------------------

_ZIP_MAGIC = b"PK\x03\x04"


def load_checkpoint_file(path: str | Path, *, map_location: Any = "cpu", mmap: bool | None = None) -> Any:
    """Load a (possibly foreign) PyTorch checkpoint file without executing code from it.

    ``mmap=None`` memory-maps zip-format files (tensors are read lazily, so optimizer moments
    that are never touched cost no memory) and reads legacy files normally.

    Raises :class:`CheckpointReadError` for a missing, truncated or corrupt file and
    :class:`UnsafeCheckpointError` when the pickle names a callable outside the policy.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointReadError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointReadError(f"{path}: the file is empty")
    is_zip = zipfile.is_zipfile(path)
    if head == _ZIP_MAGIC and not is_zip:
        raise CheckpointReadError(
            f"{path}: looks like a zip-format PyTorch checkpoint but has no valid zip directory "
            "(truncated or corrupt download?)"
        )
    use_mmap = is_zip if mmap is None else bool(mmap)
    module = sys.modules[__name__]
    try:
        # weights_only=False is safe here: `module` (this file) is the allow-list unpickler
        load_kwargs = {"map_location": map_location, "pickle_module": module, "mmap": use_mmap}
        return torch.load(path, weights_only=False, **load_kwargs)
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"{path}: {exc}") from None
    except CheckpointError:
        raise
    except RuntimeError as exc:
        if "explicit pickle_module" in str(exc):
            raise CheckpointError(
                f"{path}: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which forbids the restricted "
                "unpickler this loader needs for foreign checkpoints; unset it"
            ) from exc
        raise CheckpointReadError(f"{path}: cannot read the checkpoint ({exc})") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, TypeError, AssertionError,
            AttributeError, OSError, zipfile.BadZipFile, UnicodeDecodeError, struct.error) as exc:
        raise CheckpointReadError(
            f"{path}: cannot read the checkpoint: {type(exc).__name__}: {exc} "
            "(truncated, corrupt, or not a PyTorch checkpoint)"
        ) from exc


# --------------------------------------------------------------------------------------------
# Inspection helpers
# --------------------------------------------------------------------------------------------


def to_plain_data(obj: Any, _active: set[int] | None = None) -> Any:
    """Recursively turn placeholders into dicts (``{"__class__": "module.Name", ...fields}``).

    Containers keep their type (``OrderedDict`` becomes ``dict``), pure paths become strings,
    datetimes ISO strings, numpy scalars Python numbers; tensors and arrays are returned as they
    are. Reference cycles become the string ``"<cycle>"``.
    """
    active = set() if _active is None else _active
    if isinstance(obj, (str, bytes, int, float, bool, complex, type(None), torch.Tensor, np.ndarray)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, (datetime.date, datetime.time, datetime.timedelta)):
        return str(obj) if isinstance(obj, datetime.timedelta) else obj.isoformat()
    if isinstance(obj, PlaceholderGlobal):
        return {"__global__": obj.qualname}
    if id(obj) in active:
        return "<cycle>"
    active.add(id(obj))
    try:
        if isinstance(obj, PlaceholderObject):
            out = {"__class__": obj.qualname}
            out.update({k: to_plain_data(v, active) for k, v in obj.fields().items()})
            return out
        if isinstance(obj, dict):
            return {k: to_plain_data(v, active) for k, v in obj.items()}
        if isinstance(obj, tuple):
            return tuple(to_plain_data(v, active) for v in obj)
        if isinstance(obj, (list, collections.deque)):
            return [to_plain_data(v, active) for v in obj]
        if isinstance(obj, (set, frozenset)):
            items = [to_plain_data(v, active) for v in obj]
            try:
                return sorted(items)
            except TypeError:
                return items
        return obj
    finally:
        active.discard(id(obj))


def find_placeholders(obj: Any) -> list[str]:
    """Sorted qualified names of every placeholder class found in ``obj`` (for reports)."""
    found: set[str] = set()
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, PlaceholderGlobal):
            found.add(item.qualname)
        elif isinstance(item, PlaceholderObject):
            found.add(item.qualname)
            stack.extend([item.args, item.kwargs, item.state, item.dict_items, item.list_items,
                          item.set_items])
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset, collections.deque)):
            stack.extend(item)
    return sorted(found)
