"""Named model presets and pretrained weights: ``create_model("jmp-s", pretrained=True)``.

Each preset is a builder registered with :func:`register_model`; its architecture comes from a
YAML file in ``openjmp/configs/models/`` (``jmp_s.yaml``, ``jmp_l.yaml``, ``openjmp_mini.yaml``).
A preset with published weights carries a :class:`PretrainedCfg` (where the file comes from, its
licence, file name, and -- when known -- its SHA-256 and size).

**No downloads.** openjmp never fetches anything. A pretrained name resolves to a local file:
``checkpoint_path=...`` if given, else ``$OPENJMP_CACHE/<file_name>``, else
``$XDG_CACHE_HOME/openjmp/<file_name>`` (``~/.cache/openjmp``). If the file is absent the error
says where to get it and where to put it.

A model config (what :func:`model_config` returns and openjmp model files store) is a plain dict::

    {"architecture": "jmp-gemnet-oc", "preset": "jmp-s", "backbone": {...GemNetOCConfig...},
     "pretrain_tasks": ["oc20", ...], "num_pretrain_tasks": 4,
     "finetune_energy": false, "finetune_forces": false, "num_mlps": 5}

Overrides: any ``GemNetOCConfig`` field (``regress_forces=False``, ``direct_forces=False``, ...)
or a container option (``num_pretrain_tasks``, ``finetune_energy``, ``finetune_forces``,
``num_mlps``); anything else is an error.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from openjmp.models.gemnet_oc.config import GemNetOCConfig, load_preset_file, preset_path

ENV_CACHE = "OPENJMP_CACHE"
ARCHITECTURE = "jmp-gemnet-oc"
_CONTAINER_OPTIONS = ("num_pretrain_tasks", "finetune_energy", "finetune_forces", "num_mlps", "task_heads",
                      "finetune_energy_bias")


@dataclass(frozen=True)
class PretrainedCfg:
    """Where a preset's published weights come from (documentation + local-file checks)."""

    file_name: str
    source: str
    url: str | None = None
    license: str | None = None
    sha256: str | None = None  # pinned digest; None = not pinned (verified only when set)
    size_bytes: int | None = None  # expected size when known (a mismatch warns)
    file_format: str = "jmp-lightning"  # "jmp-lightning" (published JMP) or "openjmp" (ours)
    #: weights shipped inside the package: path under ``openjmp/assets`` (looked up first)
    packaged: str | None = None
    #: how to cite the weights
    citation: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    preset_file: str
    description: str
    pretrained: PretrainedCfg | None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, preset_file: str, description: str = "",
                   pretrained: PretrainedCfg | None = None):
    """Decorator registering ``fn(**overrides) -> nn.Module`` under ``name``."""

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, fn, preset_file, description or (fn.__doc__ or "").strip(),
                                     pretrained)
        return fn

    return decorate


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered names matching the glob ``pattern`` (only those with weights if ``pretrained``)."""
    return sorted(
        name for name, entry in _REGISTRY.items()
        if fnmatch.fnmatch(name, pattern) and (not pretrained or entry.pretrained is not None)
    )


class UnknownModelError(KeyError, ValueError):
    """A model name that is neither registered nor an existing file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelNotAvailableError(FileNotFoundError):
    """A registered model whose weights are not on this machine (the message says where to get
    them, where to put them, their licence and the checksum check)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def canonical_name(name: str) -> str:
    """Registered spelling of a model name: ``jmp_s`` / ``JMP-S`` -> ``jmp-s`` (a name that is
    not registered is returned unchanged)."""
    key = str(name).strip()
    if key in _REGISTRY:
        return key
    alt = key.lower().replace("_", "-")
    return alt if alt in _REGISTRY else key


def get_model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[canonical_name(name)]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None


# --------------------------------------------------------------------------------------------
# Model configs
# --------------------------------------------------------------------------------------------


def model_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The plain-dict model config of preset ``name`` with ``overrides`` applied."""
    entry = get_model_entry(name)
    data = load_preset_file(preset_path(entry.preset_file))
    heads = data.get("heads") or {}
    tasks = list(heads.get("pretrain_tasks") or [])
    config = {
        "architecture": ARCHITECTURE,
        "preset": name,
        "backbone": GemNetOCConfig(**data["backbone"]).model_dump(),
        "pretrain_tasks": tasks,
        "num_pretrain_tasks": len(tasks),
        "finetune_energy": False,
        "finetune_forces": False,
        "num_mlps": int(heads.get("num_mlps", 5)),
    }
    return apply_overrides(config, overrides)


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Copy of ``config`` with backbone-field / container-option overrides (unknown: error)."""
    out = dict(config, backbone=dict(config["backbone"]))
    backbone_fields = set(GemNetOCConfig.model_fields)
    for key, value in overrides.items():
        if key in _CONTAINER_OPTIONS:
            out[key] = value
        elif key in backbone_fields:
            out["backbone"][key] = value
        else:
            raise TypeError(
                f"unknown model option {key!r}: use a GemNetOCConfig field or one of "
                f"{', '.join(_CONTAINER_OPTIONS)}"
            )
    GemNetOCConfig(**out["backbone"])  # validate now, with the field named on error
    if "num_pretrain_tasks" in overrides and len(out.get("pretrain_tasks") or []) != out["num_pretrain_tasks"]:
        tasks = list(out.get("pretrain_tasks") or [])
        n = int(out["num_pretrain_tasks"])
        out["pretrain_tasks"] = tasks[:n] + [f"task{i}" for i in range(len(tasks), n)]
    return out


def build_model(config: dict[str, Any]) -> nn.Module:
    """A freshly initialised ``JMPModel`` from a model config dict."""
    from openjmp.models.jmp_model import JMPModel

    if config.get("architecture", ARCHITECTURE) != ARCHITECTURE:
        raise ValueError(f"unknown architecture {config.get('architecture')!r} (only {ARCHITECTURE!r})")
    model = JMPModel(
        GemNetOCConfig(**config["backbone"]),
        num_pretrain_tasks=int(config.get("num_pretrain_tasks", 0)),
        finetune_energy=bool(config.get("finetune_energy", False)),
        finetune_forces=bool(config.get("finetune_forces", False)),
        num_mlps=int(config.get("num_mlps", 5)),
        finetune_energy_bias=bool(config.get("finetune_energy_bias", False)),
    )
    task_heads = config.get("task_heads") or {}
    if task_heads:
        # graph-level property heads of fine-tuned models (scalar / classification): per-atom
        # MLPs on the backbone atom features, reduced per structure (docs/model-files.md)
        from openjmp.models.heads import mlp_head

        emb = model.config.emb_size_atom
        model.task_heads = nn.ModuleDict({
            name: mlp_head(emb, int(spec.get("num_mlps", config.get("num_mlps", 5))), hidden_bias=True, last_bias=True)
            for name, spec in task_heads.items()
        })
    model.model_config = dict(config)  # type: ignore[attr-defined]  # kept for saving
    return model


# --------------------------------------------------------------------------------------------
# Local weight files
# --------------------------------------------------------------------------------------------


def cache_dirs() -> list[Path]:
    """Folders searched for published weight files, in order."""
    dirs = []
    if os.environ.get(ENV_CACHE):
        dirs.append(Path(os.environ[ENV_CACHE]).expanduser())
    xdg = os.environ.get("XDG_CACHE_HOME")
    dirs.append((Path(xdg) if xdg else Path.home() / ".cache") / "openjmp")
    return dirs


def packaged_file(name: str) -> Path | None:
    """The weight file shipped inside the package for ``name`` (None if it ships none)."""
    cfg = get_model_entry(name).pretrained
    if cfg is None or not cfg.packaged:
        return None
    from importlib import resources

    return Path(str(resources.files("openjmp") / "assets" / cfg.packaged))


def weight_status(name: str) -> tuple[str, Path | None]:
    """(status, path) of ``name``'s weights: ``shipped`` (inside the package), ``present`` (in a
    cache folder), ``missing`` (published, not on this machine) or ``none`` (no weights)."""
    cfg = get_model_entry(name).pretrained
    if cfg is None:
        return "none", None
    packaged = packaged_file(name)
    if packaged is not None and packaged.is_file():
        return "shipped", packaged
    for d in cache_dirs():
        if (d / cfg.file_name).is_file():
            return "present", d / cfg.file_name
    return "missing", None


def _size_text(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def missing_weights_message(name: str) -> str:
    """One message for weights that are not here: where to download, where to put, licence, check."""
    entry = get_model_entry(name)
    cfg = entry.pretrained
    assert cfg is not None
    dest = cache_dirs()[0] / cfg.file_name
    size = f", {_size_text(cfg.size_bytes)}" if cfg.size_bytes else ""
    src = f"download {cfg.url}" if cfg.url else f"get {cfg.file_name}"
    if cfg.sha256:
        check = f"its SHA-256 is checked against {cfg.sha256} when it is loaded"
    else:
        check = ("its SHA-256 is checked when it is loaded once a digest is pinned (none is for this "
                 "file yet" + (", its size is checked" if cfg.size_bytes else "") + ")")
    lic = f"licence {cfg.license}" if cfg.license else "licence: see the source"
    looked = ", ".join(str(d / cfg.file_name) for d in cache_dirs())
    return (f"model {entry.name!r} ({cfg.file_name}{size}) is not on this machine and openjmp does not "
            f"download: {src} and put it at {dest} (or in the folder named by ${ENV_CACHE}; looked in "
            f"{looked}); {lic}; {check}")


def resolve_pretrained_file(name: str) -> Path:
    """The local file holding ``name``'s published weights, or a :class:`ModelNotAvailableError`
    saying where to get it and where to put it. Checks size (warning) and SHA-256 (when pinned)."""
    entry = get_model_entry(name)
    cfg = entry.pretrained
    if cfg is None:
        raise UnknownModelError(
            f"model {entry.name!r} has no published weights (an architecture only); use one of "
            f"{', '.join(list_models(pretrained=True))} or a model file path"
        )
    status, path = weight_status(entry.name)
    if path is None:
        raise ModelNotAvailableError(missing_weights_message(entry.name))
    check_pretrained_file(path, cfg)
    return path


def looks_like_path(text: str) -> bool:
    """A model argument written as a path (has a folder separator or a file suffix)."""
    return "/" in text or os.sep in text or text.endswith((".pt", ".ckpt", ".pth")) or text.startswith("~")


def resolve_model(name_or_path: str | Path) -> Path:
    """The local file of a model given by registry name (``openjmp-mini``, ``jmp-s``, aliases
    ``jmp_s``...) or path. Raises :class:`UnknownModelError` (neither a file nor a name),
    :class:`ModelNotAvailableError` (a registered model whose weights are not here) or
    FileNotFoundError (a path that does not exist)."""
    text = str(name_or_path)
    path = Path(os.path.expandvars(text)).expanduser()
    if path.exists():
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a folder, not a model file")
        return path
    if canonical_name(text) in _REGISTRY:
        return resolve_pretrained_file(canonical_name(text))
    if looks_like_path(text):
        raise FileNotFoundError(f"{text}: no such model file")
    raise UnknownModelError(
        f"unknown model {text!r}: not a file and not a registered name "
        f"({', '.join(list_models(pretrained=True))})")


def registry_name_of_file(path: str | Path) -> str | None:
    """The registry name of a file that is a model's shipped or pinned weights (by SHA-256)."""
    from openjmp.checkpoints.format import sha256_file

    path = Path(path)
    candidates = [n for n in list_models(pretrained=True) if _REGISTRY[n].pretrained.sha256
                  or (packaged_file(n) is not None and packaged_file(n).is_file())]
    if not candidates:
        return None
    for n in candidates:
        packaged = packaged_file(n)
        if packaged is not None and packaged.is_file():
            try:
                if packaged.resolve() == path.resolve():
                    return n
            except OSError:
                pass
    try:
        digest = sha256_file(path)
    except OSError:
        return None
    for n in candidates:
        if _REGISTRY[n].pretrained.sha256 == digest:
            return n
    return None


def check_pretrained_file(path: Path, cfg: PretrainedCfg) -> None:
    from openjmp.checkpoints.format import verify_sha256

    if cfg.size_bytes is not None:
        size = path.stat().st_size
        if size != cfg.size_bytes:
            warnings.warn(
                f"{path}: {size} bytes, the published {cfg.file_name} has {cfg.size_bytes} "
                "(incomplete download or a different file?)",
                stacklevel=3,
            )
    if cfg.sha256:
        verify_sha256(path, cfg.sha256)


def is_openjmp_model_file(path: str | Path) -> bool:
    """True for files written by :func:`openjmp.checkpoints.format.save_model` (cheap sniff of
    the pickle record for the format name; nothing is unpickled)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                return False
            with archive.open(names[0]) as f:
                head = f.read(4096)
    except (zipfile.BadZipFile, OSError):
        return False
    return b"openjmp.model" in head


# --------------------------------------------------------------------------------------------
# Creation
# --------------------------------------------------------------------------------------------


def create_model(name: str, pretrained: bool = False, checkpoint_path: str | Path | None = None,
                 *, use_ema: bool = True, **overrides: Any) -> nn.Module:
    """Build preset ``name`` (with ``overrides``) and optionally load weights.

    ``pretrained=True`` loads the published weights from the local cache (see the module
    docstring); ``checkpoint_path`` loads a given file instead (a published JMP checkpoint or an
    openjmp model file). ``use_ema``: EMA weights when the file has them (default, as JMP).
    Embedding and backbone load strictly; fine-tuning heads keep their initialisation; the
    backbone's force-output weights are skipped when ``direct_forces=False``.
    """
    entry = get_model_entry(name)
    path = None
    if checkpoint_path is not None:
        path = Path(checkpoint_path)
    elif pretrained:
        path = resolve_pretrained_file(name)  # before building: a missing file fails fast
    model = entry.builder(**overrides)
    if path is None:
        return model
    if is_openjmp_model_file(path):
        load_model_weights(model, path, use_ema=use_ema)
    else:
        _load_jmp_weights(model, path, entry, use_ema)
    return model


def _load_jmp_weights(model: nn.Module, path: Path, entry: ModelEntry, use_ema: bool) -> None:
    from openjmp.checkpoints.errors import CheckpointError
    from openjmp.checkpoints.jmp import PUBLISHED_VARIANTS, load_jmp_checkpoint

    if entry.name in PUBLISHED_VARIANTS:
        ckpt = load_jmp_checkpoint(path, use_ema=use_ema)
        if ckpt.variant != entry.name:
            raise CheckpointError(f"{path}: this is a {ckpt.variant} checkpoint, not {entry.name}")
    else:
        spec, config = pretraining_key_spec(entry.name)
        ckpt = load_jmp_checkpoint(path, use_ema=use_ema, key_spec=spec, backbone_config=config)
    num_tasks = len(model.output.out_energy) if getattr(model, "output", None) else 0
    if num_tasks and num_tasks != len(ckpt.task_names):
        raise CheckpointError(
            f"{path}: the checkpoint has {len(ckpt.task_names)} pre-training heads, the model "
            f"{num_tasks} (use num_pretrain_tasks=0 or {len(ckpt.task_names)})"
        )
    ckpt.load_into(model, pretrain_heads=num_tasks > 0)


def pretraining_key_spec(name: str):
    """(KeySpec, GemNetOCConfig) of a JMP pre-training checkpoint of preset ``name``: the
    preset's default model (all pre-training heads, direct forces) plus one step counter per
    task, built on the meta device (no memory)."""
    from openjmp.checkpoints.jmp import key_spec_from_state_dict

    config = model_config(name)
    with torch.device("meta"):
        model = build_model(config)
    sd = dict(model.state_dict())
    for task in config["pretrain_tasks"]:
        sd[f"task_steps._module_dict._typed_moduledict_{task}.value"] = torch.empty((), device="meta")
    spec = key_spec_from_state_dict(sd, name=name, task_order=config["pretrain_tasks"])
    return spec, GemNetOCConfig(**config["backbone"])


def load_model_weights(model: nn.Module, path: str | Path, use_ema: bool = True) -> Any:
    """Load an openjmp model file's weights into ``model``; returns the
    :class:`~openjmp.checkpoints.format.ModelFile`. Strict on embedding and backbone; the file's
    force-output and head weights are skipped when the model has no such modules, and heads
    absent from the file keep their initialisation."""
    from openjmp.checkpoints.errors import CheckpointKeyError
    from openjmp.checkpoints.format import load_model_file
    from openjmp.models.gemnet_oc.keys import canonical_state_dict, with_aliases

    mf = load_model_file(path)
    weights = canonical_state_dict(mf.weights(use_ema=use_ema), check=False)
    model_keys = canonical_state_dict(model.state_dict(), check=False)
    # heads the file does not have at all keep their initialisation (a pre-training file loaded
    # into a fine-tuning model); a head the file has only in part is an error
    absent_heads = tuple(p for p in ("out_energy.", "out_forces.", "output.", "task_heads.")
                         if not any(k.startswith(p) for k in weights))
    missing = [k for k in model_keys if k not in weights and not k.startswith(absent_heads or ("\0",))]
    unexpected = [k for k in weights if k not in model_keys]
    wrong = [f"{k} {tuple(weights[k].shape)} (model {tuple(v.shape)})"
             for k, v in model_keys.items() if k in weights and weights[k].shape != v.shape]
    # a model built without force outputs / heads may ignore those weights; nothing else
    optional = ("backbone.out_mlp_F.", "output.", "out_energy.", "out_forces.", "task_heads.")
    unexpected = [k for k in unexpected
                  if not (k.startswith(optional) or ".scale_rbf_F." in k or ".dense_rbf_F." in k
                          or ".seq_forces." in k)]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                parts.append(f"{len(items)} {label}: {', '.join(items[:15])}")
        raise CheckpointKeyError(f"{path}: weights do not fit the model: " + "; ".join(parts))
    full = with_aliases({k: v for k, v in weights.items() if k in model_keys}, model)
    model.load_state_dict(full, strict=False)
    return mf


def load_model(path: str | Path, use_ema: bool = True, map_location: Any = "cpu"):
    """Rebuild a model from an openjmp model file: returns ``(model, ModelFile)``; the file's
    ``normalization`` and ``heads`` say how to turn outputs into physical units. ``path`` may be
    a registry name (``openjmp-mini``; see :func:`resolve_model`)."""
    from openjmp.checkpoints.format import load_model_file

    path = resolve_model(path)
    if not is_openjmp_model_file(path):
        from openjmp.checkpoints.errors import CheckpointReadError

        raise CheckpointReadError(
            f"{path}: not an openjmp model file (a published JMP checkpoint is converted with "
            "`openjmp models convert`; fine-tuning writes OUTPUT_DIR/model.pt)")
    mf = load_model_file(path, map_location=map_location)
    model = build_model(mf.model_config)
    load_model_weights(model, path, use_ema=use_ema)
    return model, mf


def save_model_file(model: nn.Module, path: str | Path, *, normalization: dict[str, Any],
                    heads: dict[str, Any], ema_state_dict: dict[str, torch.Tensor] | None = None,
                    extra: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> str:
    """Save a model built by this registry (its ``model_config``) as an openjmp model file.
    Alias names are dropped (one tensor per name). Returns the file's SHA-256."""
    from openjmp.checkpoints.format import save_model
    from openjmp.models.gemnet_oc.keys import canonical_state_dict

    config = config if config is not None else getattr(model, "model_config", None)
    if config is None:
        raise ValueError("model has no model_config: pass config= (see openjmp.models.registry)")
    ema = canonical_state_dict(ema_state_dict, check=False) if ema_state_dict is not None else None
    return save_model(path, config, canonical_state_dict(model.state_dict()), normalization=normalization,
                      heads=heads, ema_state_dict=ema, extra=extra)


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

_JMP_SOURCE = (
    "JMP pre-trained GemNet-OC (Shoghi et al., ICLR 2024, 'From Molecules to Materials'), "
    "jointly on OC20, OC22, ANI-1x and Transition-1x; published by facebookresearch/JMP as a "
    "PyTorch-Lightning checkpoint (EMA weights in optimizer_states)"
)
_JMP_LICENSE = "CC-BY-NC 4.0 (JMP repository LICENSE; check the terms before use)"
_JMP_CITATION = ("N. Shoghi, A. Kolluru, J. R. Kitchin, Z. W. Ulissi, C. L. Zitnick, B. M. Wood, "
                 "'From Molecules to Materials: Pre-training Large Generalizable Models for Atomic "
                 "Property Prediction', ICLR 2024 (arXiv:2310.16802)")


@register_model("jmp-s", preset_file="jmp_s", description="JMP-S: GemNet-OC, 4 blocks, ~44M parameters with heads",
                pretrained=PretrainedCfg(file_name="jmp-s.pt", source=_JMP_SOURCE,
                                         url="https://jmp-iclr-datasets.s3.amazonaws.com/jmp-s.pt",
                                         license=_JMP_LICENSE, citation=_JMP_CITATION))
def jmp_s(**overrides: Any) -> nn.Module:
    return build_model(model_config("jmp-s", **overrides))


@register_model("jmp-l", preset_file="jmp_l", description="JMP-L: GemNet-OC, 6 blocks, ~235M parameters with heads",
                pretrained=PretrainedCfg(file_name="jmp-l.pt", source=_JMP_SOURCE,
                                         url="https://jmp-iclr-datasets.s3.amazonaws.com/jmp-l.pt",
                                         license=_JMP_LICENSE, size_bytes=3_749_529_931,
                                         citation=_JMP_CITATION))
def jmp_l(**overrides: Any) -> nn.Module:
    return build_model(model_config("jmp-l", **overrides))


@register_model("openjmp-tiny", preset_file="openjmp_tiny",
                description="tiny GemNet-OC (2 blocks, 32/48 features; the reference fixture's sizes) for tests; no weights")
def openjmp_tiny(**overrides: Any) -> nn.Module:
    return build_model(model_config("openjmp-tiny", **overrides))


def _packaged_card(name: str) -> dict:
    """The model card data shipped beside packaged weights (sha256, config, results)."""
    import json
    from importlib import resources

    path = Path(str(resources.files("openjmp") / "assets" / "weights" / f"{name}.json"))
    return json.loads(path.read_text()) if path.is_file() else {}


@register_model("openjmp-mini", preset_file="openjmp_mini",
                description="CPU-sized GemNet-OC (3 blocks, 64 features) pre-trained on the shipped mini suite "
                            "(configs/pretrain/mini.yaml); weights ship with the package",
                pretrained=PretrainedCfg(
                    file_name="openjmp-mini.pt", packaged="weights/openjmp-mini.pt", file_format="openjmp",
                    source="openjmp pretrain --config configs/pretrain/mini.yaml on the shipped mini suite "
                           "(EMT slabs + GFN2-xTB molecules and reaction paths); card: assets/weights/openjmp-mini.md",
                    license="MIT (weights trained by openjmp on openjmp's own generated data)",
                    sha256=_packaged_card("openjmp-mini").get("sha256"),
                    size_bytes=_packaged_card("openjmp-mini").get("size_bytes"),
                    citation="openjmp (this package); the method: " + _JMP_CITATION))
def openjmp_mini(**overrides: Any) -> nn.Module:
    return build_model(model_config("openjmp-mini", **overrides))
