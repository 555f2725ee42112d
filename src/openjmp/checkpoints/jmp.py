"""Load the published JMP-S / JMP-L checkpoints (``jmp-s.pt`` / ``jmp-l.pt``).

The files are full PyTorch-Lightning checkpoints of JMP's pre-training module (layout in
``shared/reference/gemnet_oc/README.md`` -> "Checkpoints"). This module

1. reads them with the restricted unpickler (:mod:`openjmp.checkpoints.safe_unpickle`): nothing
   pickled in the file runs; config objects come back as inert placeholders / plain dicts;
2. detects JMP-S vs JMP-L from the key names and shapes and checks ``ckpt["state_dict"]``
   strictly against the packaged key lists (``data/jmp_{s,l}_keys.json``: every key's shape,
   dtype, parameter/buffer kind, alias, EMA index and fine-tuning fate); missing, unexpected,
   mis-shaped and mis-typed keys are reported by name;
3. substitutes the EMA weights (``optimizer_states[0]["ema"]``, a tuple aligned with the
   state-dict keys after dropping ``*rbf.offset``, ``*rbf.temps``, ``*scale_factor``, keys
   containing ``.seq_energy_pre.`` and keys starting with ``task_steps``), asserting equal shapes
   and dtypes -- what JMP's fine-tuning loads by default;
4. returns one tensor per name (our state-dict keys equal the original ones; alias names and the
   ``task_steps.*`` counters are dropped, see :mod:`openjmp.models.gemnet_oc.keys`).

**Aliases and EMA.** Each output block registers its atom MLP twice (``layers`` and
``seq_energy_pre``). The EMA tuple covers only the first name, so after JMP substitutes the EMA
values, ``out_blocks.{i}.layers.*`` hold EMA weights but ``out_blocks.{i}.seq_energy_pre.*`` still
hold the raw weights -- and since ``load_state_dict`` visits ``seq_energy_pre`` after ``layers``,
the model JMP fine-tunes ends up with the **raw** weights in those MLPs (35 tensors in JMP-S).
``alias_values="jmp"`` (default) reproduces exactly the weights JMP's fine-tuning starts from;
``alias_values="ema"`` uses the EMA values for them as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch

from openjmp.checkpoints.errors import CheckpointError, CheckpointKeyError
from openjmp.checkpoints.safe_unpickle import find_placeholders, load_checkpoint_file, to_plain_data

__all__ = [
    "PUBLISHED_VARIANTS",
    "KeyEntry",
    "KeySpec",
    "JMPCheckpoint",
    "published_key_spec",
    "published_pretrain_tasks",
    "key_spec_from_state_dict",
    "ema_parameter_keys",
    "check_state_dict",
    "detect_variant",
    "load_jmp_checkpoint",
]

#: variant name -> (packaged key list, backbone preset name in ``configs/models``)
PUBLISHED_VARIANTS: dict[str, tuple[str, str]] = {
    "jmp-s": ("jmp_s_keys.json", "jmp_s"),
    "jmp-l": ("jmp_l_keys.json", "jmp_l"),
}

STEP_COUNTER_PREFIX = "task_steps."
PRETRAIN_HEADS_PREFIX = "output."
EMBEDDING_KEY = "embedding.atom_embedding.weight"
JMP_FINETUNE_EMBEDDING_KEY = "embedding.weight"

_DROP_STEPS = "training step counters (torchmetrics SumMetric state)"
_DROP_HEADS = (
    "pre-training per-dataset heads; not loaded by fine-tuning (only re-used when "
    "pretrain_output_head.enabled)"
)
_DROP_FORCES = (
    "ignored when the fine-tuning backbone has regress_forces=False or direct_forces=False "
    "(the JMP fine-tuning default: disable_force_output_heads=True)"
)

# keys of the backbone's direct-force output path (absent when direct_forces=False)
_FORCE_OUTPUT_KEY = re.compile(
    r"^backbone\.(out_mlp_F\.|out_blocks\.\d+\.(scale_rbf_F|dense_rbf_F|seq_forces)\.)"
)
# alias name -> canonical name (same tensor in the original module tree)
_ALIAS_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^(.*\.out_blocks\.\d+)\.seq_energy_pre\.(.*)$"), r"\1.layers.\2"),
    (re.compile(r"^(.*\.bases)\.cbf_basis_(?:aeint|tint)\.radial_basis\.(.*)$"),
     r"\1.sbf_basis_qint.radial_basis.\2"),
)


def _alias_of(key: str) -> str | None:
    for pattern, repl in _ALIAS_RULES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return None


def _normalise_step_key(key: str) -> str:
    # torchmetrics >= 1 names the SumMetric state ``sum_value``; the published files say ``value``
    if key.startswith(STEP_COUNTER_PREFIX) and key.endswith(".sum_value"):
        return key[: -len("sum_value")] + "value"
    return key


def _is_buffer_key(key: str) -> bool:
    return (
        key.endswith("rbf.offset")
        or key.endswith("rbf.temps")
        or key.endswith("scale_factor")
        or key.startswith(STEP_COUNTER_PREFIX)
    )


def ema_parameter_keys(keys: Iterable[str]) -> list[str]:
    """State-dict keys in EMA-tuple order (JMP's rule; see the module docstring)."""
    return [
        k
        for k in keys
        if not (
            k.endswith("rbf.offset")
            or k.endswith("rbf.temps")
            or k.endswith("scale_factor")
            or ".seq_energy_pre." in k
            or k.startswith("task_steps")
        )
    ]


# --------------------------------------------------------------------------------------------
# Key specifications
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyEntry:
    """One ``state_dict`` entry of a JMP pre-training checkpoint (fields as in the key JSONs)."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # "float32"
    kind: str  # "parameter" | "buffer"
    alias_of: str | None
    ema_index: int | None
    group: str  # embedding | backbone | pretrain_output_heads | task_step_counters
    finetune_target_key: str | None
    finetune_dropped_reason: str | None

    @property
    def is_force_output(self) -> bool:
        return bool(_FORCE_OUTPUT_KEY.match(self.name))


@dataclass(frozen=True)
class KeySpec:
    """The full key layout of one checkpoint kind, in file order."""

    name: str
    entries: tuple[KeyEntry, ...]
    task_order: tuple[str, ...] = ()

    @property
    def by_name(self) -> dict[str, KeyEntry]:
        return {e.name: e for e in self.entries}

    def ema_keys(self) -> list[str]:
        """Keys in EMA-tuple order (by ``ema_index``)."""
        indexed = sorted((e.ema_index, e.name) for e in self.entries if e.ema_index is not None)
        if [i for i, _ in indexed] != list(range(len(indexed))):
            raise ValueError(f"{self.name}: EMA indices are not 0..n-1")
        return [name for _, name in indexed]


def _entry_from_json(d: Mapping[str, Any]) -> KeyEntry:
    return KeyEntry(
        name=d["name"],
        shape=tuple(int(s) for s in d["shape"]),
        dtype=str(d["dtype"]),
        kind=str(d["kind"]),
        alias_of=d.get("alias_of"),
        ema_index=d.get("ema_index"),
        group=str(d["group"]),
        finetune_target_key=d.get("finetune_target_key"),
        finetune_dropped_reason=d.get("finetune_dropped_reason"),
    )


@cache
def published_key_spec(variant: str) -> KeySpec:
    """Key layout of a published checkpoint, ``"jmp-s"`` or ``"jmp-l"`` (packaged JSON)."""
    if variant not in PUBLISHED_VARIANTS:
        raise KeyError(f"unknown JMP variant {variant!r}; known: {sorted(PUBLISHED_VARIANTS)}")
    file_name = PUBLISHED_VARIANTS[variant][0]
    text = (resources.files("openjmp.checkpoints") / "data" / file_name).read_text()
    data = json.loads(text)
    return KeySpec(
        name=variant,
        entries=tuple(_entry_from_json(e) for e in data["entries"]),
        task_order=tuple(data.get("task_order", ())),
    )


@cache
def published_pretrain_tasks() -> tuple[dict[str, Any], ...]:
    """JMP's pre-training tasks in head order with their normalisation (packaged JSON):
    ``{"name", "head_index", "energy": {"mean", "std"}, "forces": {"mean", "std"},
    "energy_reduction", "linear_reference", "graph"}`` (energies eV, forces eV/Å)."""
    text = (resources.files("openjmp.checkpoints") / "data" / "jmp_pretrain_tasks.json").read_text()
    return tuple(json.loads(text)["tasks"])


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _finetune_fate(name: str) -> tuple[str | None, str | None]:
    if name.startswith(STEP_COUNTER_PREFIX):
        return None, _DROP_STEPS
    if name.startswith(PRETRAIN_HEADS_PREFIX):
        return None, _DROP_HEADS
    if name == EMBEDDING_KEY:
        return JMP_FINETUNE_EMBEDDING_KEY, None
    if _FORCE_OUTPUT_KEY.match(name):
        return name, _DROP_FORCES
    return name, None


def _group(name: str) -> str:
    if name.startswith(STEP_COUNTER_PREFIX):
        return "task_step_counters"
    if name.startswith(PRETRAIN_HEADS_PREFIX):
        return "pretrain_output_heads"
    if name.startswith("embedding."):
        return "embedding"
    return "backbone"


def key_spec_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], name: str = "custom", task_order: Iterable[str] = ()
) -> KeySpec:
    """Derive a :class:`KeySpec` from a state dict in the JMP pre-training layout (any size).

    Uses the same rules the published key lists follow (alias names, EMA order, fine-tuning
    fate); for the published layouts it reproduces the packaged JSONs field by field (tested).
    """
    ema_index = {k: i for i, k in enumerate(ema_parameter_keys(state_dict.keys()))}
    entries = []
    for key, value in state_dict.items():
        target, reason = _finetune_fate(key)
        entries.append(
            KeyEntry(
                name=key,
                shape=tuple(value.shape),
                dtype=_dtype_name(value.dtype),
                kind="buffer" if _is_buffer_key(key) else "parameter",
                alias_of=_alias_of(key),
                ema_index=ema_index.get(key),
                group=_group(key),
                finetune_target_key=target,
                finetune_dropped_reason=reason,
            )
        )
    return KeySpec(name=name, entries=tuple(entries), task_order=tuple(task_order))


# --------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------


def _listing(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... and {len(items) - limit} more"
    return shown


def state_dict_problems(state_dict: Mapping[str, torch.Tensor], spec: KeySpec) -> dict[str, list[str]]:
    """Missing / unexpected / shape / dtype differences between ``state_dict`` and ``spec``."""
    expected = spec.by_name
    got = {_normalise_step_key(k): v for k, v in state_dict.items()}
    problems: dict[str, list[str]] = {
        "missing": [k for k in expected if k not in got],
        "unexpected": [k for k in got if k not in expected],
        "shape": [],
        "dtype": [],
    }
    for key, entry in expected.items():
        value = got.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            problems["dtype"].append(f"{key} (a {type(value).__name__}, not a tensor)")
            continue
        if tuple(value.shape) != entry.shape:
            problems["shape"].append(f"{key} {tuple(value.shape)} (expected {entry.shape})")
        elif _dtype_name(value.dtype) != entry.dtype:
            problems["dtype"].append(f"{key} {_dtype_name(value.dtype)} (expected {entry.dtype})")
    return problems


def _format_problems(problems: dict[str, list[str]]) -> str:
    parts = []
    for kind, label in (("missing", "missing keys"), ("unexpected", "unexpected keys"),
                        ("shape", "wrong shapes"), ("dtype", "wrong dtypes")):
        if problems[kind]:
            parts.append(f"{len(problems[kind])} {label}: {_listing(problems[kind])}")
    return "; ".join(parts)


def check_state_dict(state_dict: Mapping[str, torch.Tensor], spec: KeySpec, source: str = "state dict") -> None:
    """Raise :class:`CheckpointKeyError` unless ``state_dict`` has exactly ``spec``'s keys,
    shapes and dtypes (the step counters may be named ``.value`` or ``.sum_value``)."""
    problems = state_dict_problems(state_dict, spec)
    if any(problems.values()):
        raise CheckpointKeyError(
            f"{source}: the state dict does not match the {spec.name} layout: "
            f"{_format_problems(problems)}"
        )


def detect_variant(state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> KeySpec:
    """The published layout (JMP-S or JMP-L) that ``state_dict`` matches exactly."""
    reports = {}
    for variant in PUBLISHED_VARIANTS:
        spec = published_key_spec(variant)
        problems = state_dict_problems(state_dict, spec)
        if not any(problems.values()):
            return spec
        reports[variant] = problems
    closest = min(reports, key=lambda v: sum(len(p) for p in reports[v].values()))
    raise CheckpointKeyError(
        f"{source}: the state dict matches neither published layout "
        f"({', '.join(PUBLISHED_VARIANTS)}); closest is {closest}: "
        f"{_format_problems(reports[closest])}"
    )


# --------------------------------------------------------------------------------------------
# The loaded checkpoint
# --------------------------------------------------------------------------------------------


@dataclass
class JMPCheckpoint:
    """A JMP pre-training checkpoint, reduced to what openjmp needs.

    ``state_dict``: one tensor per name, our keys (= original keys) without alias names and
    without ``task_steps.*``: ``embedding.atom_embedding.weight``, ``backbone.*``,
    ``output.out_energy.{t}.*`` / ``output.out_forces.{t}.*`` (t in ``task_names`` order).
    """

    path: Path
    variant: str
    key_spec: KeySpec
    state_dict: dict[str, torch.Tensor]
    used_ema: bool
    alias_values: str
    task_names: tuple[str, ...]
    backbone_config: Any = None  # GemNetOCConfig of the detected preset (None for custom specs)
    checkpoint_backbone_hparams: dict[str, Any] | None = None
    config_differences: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    epoch: int | None = None
    global_step: int | None = None
    lightning_version: str | None = None
    ema_decay: float | None = None
    hyper_parameters: Any = None  # plain data (placeholders turned into dicts)
    placeholders: list[str] = field(default_factory=list)

    def pretrain_normalization(self) -> dict[str, dict[str, Any]]:
        """Per pre-training head: energy/forces mean and std (eV, eV/Å) that turn the head's
        normalised outputs into physical units; empty for layouts other than JMP-S / JMP-L."""
        if self.variant not in PUBLISHED_VARIANTS:
            return {}
        tasks = published_pretrain_tasks()
        if tuple(t["name"] for t in tasks) != self.task_names:
            return {}
        return {t["name"]: {"energy": dict(t["energy"]), "forces": dict(t["forces"]),
                            "energy_reduction": t["energy_reduction"],
                            "linear_reference": t["linear_reference"]} for t in tasks}

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """Embedding + backbone (everything but the pre-training heads)."""
        return {k: v for k, v in self.state_dict.items() if not k.startswith(PRETRAIN_HEADS_PREFIX)}

    def pretrain_heads_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict.items() if k.startswith(PRETRAIN_HEADS_PREFIX)}

    def finetune_state_dict(self, direct_forces: bool = False, jmp_names: bool = False) -> dict[str, torch.Tensor]:
        """What JMP's fine-tuning loads: embedding + backbone, without the pre-training heads
        and -- unless ``direct_forces`` -- without the backbone's force-output keys.

        ``jmp_names`` renames the embedding to JMP's fine-tuning name ``embedding.weight``.
        """
        out = {}
        for key, value in self.backbone_state_dict().items():
            if not direct_forces and _FORCE_OUTPUT_KEY.match(key):
                continue
            if jmp_names and key == EMBEDDING_KEY:
                key = JMP_FINETUNE_EMBEDDING_KEY
            out[key] = value
        return out

    def load_into(self, model: torch.nn.Module, *, pretrain_heads: bool = True) -> None:
        """Copy the weights into an openjmp ``JMPModel`` (strict on embedding and backbone).

        Fine-tuning heads (``out_energy.*`` / ``out_forces.*``) keep their initialisation; the
        backbone's force-output keys are skipped when the model has none (direct_forces off).
        """
        from openjmp.models.gemnet_oc.keys import canonical_state_dict, with_aliases

        model_keys = canonical_state_dict(model.state_dict(), check=False)
        source = dict(self.state_dict) if pretrain_heads else self.backbone_state_dict()
        source = {k: v for k, v in source.items() if k in model_keys or not _FORCE_OUTPUT_KEY.match(k)}
        unexpected = [k for k in source if k not in model_keys]
        missing = [
            k for k in model_keys
            if k not in source and not k.startswith(("out_energy.", "out_forces."))
            and not (not pretrain_heads and k.startswith(PRETRAIN_HEADS_PREFIX))
        ]
        wrong = [
            f"{k} {tuple(v.shape)} (model {tuple(model_keys[k].shape)})"
            for k, v in source.items()
            if k in model_keys and tuple(v.shape) != tuple(model_keys[k].shape)
        ]
        if unexpected or missing or wrong:
            parts = []
            if missing:
                parts.append(f"{len(missing)} keys missing from the checkpoint: {_listing(missing)}")
            if unexpected:
                parts.append(f"{len(unexpected)} checkpoint keys the model lacks: {_listing(unexpected)}")
            if wrong:
                parts.append(f"{len(wrong)} wrong shapes: {_listing(wrong)}")
            raise CheckpointKeyError(f"{self.path}: cannot load into the model: " + "; ".join(parts))
        full = with_aliases(source, model)
        result = model.load_state_dict(full, strict=False)
        leftover = [k for k in result.unexpected_keys]
        if leftover:  # cannot happen after the checks above; keep the loader honest
            raise CheckpointKeyError(f"{self.path}: unexpected keys while loading: {_listing(leftover)}")


def _plain_backbone_hparams(hparams: Any) -> dict[str, Any] | None:
    if isinstance(hparams, dict):
        backbone = hparams.get("backbone")
        if isinstance(backbone, dict):
            return {k: v for k, v in backbone.items() if k != "__class__"}
    return None


def _config_differences(file_hparams: dict[str, Any] | None, config: Any) -> dict[str, tuple[Any, Any]]:
    if file_hparams is None or config is None:
        return {}
    preset = config.model_dump()
    diffs = {}
    for key, value in file_hparams.items():
        if key in preset and value != preset[key]:
            diffs[key] = (value, preset[key])
    return diffs


def _ema_tuple(ckpt: Mapping[str, Any], path: Path) -> tuple[list[torch.Tensor], float | None]:
    states = ckpt.get("optimizer_states")
    hint = " (use_ema=False loads the raw weights)"
    if not isinstance(states, (list, tuple)) or not states:
        raise CheckpointError(f"{path}: no optimizer_states, so no EMA weights{hint}")
    if len(states) != 1:
        raise CheckpointError(f"{path}: expected one optimizer state, found {len(states)}{hint}")
    state = states[0]
    if not isinstance(state, dict) or state.get("ema") is None:
        raise CheckpointError(f"{path}: optimizer_states[0] has no 'ema' entry{hint}")
    ema = state["ema"]
    if not isinstance(ema, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in ema):
        raise CheckpointError(f"{path}: optimizer_states[0]['ema'] is not a sequence of tensors")
    decay = state.get("decay")
    return list(ema), float(decay) if isinstance(decay, (int, float)) else None


def _apply_ema(state_dict: dict[str, torch.Tensor], spec: KeySpec, ema: list[torch.Tensor], path: Path) -> None:
    keys = ema_parameter_keys(state_dict.keys())
    if keys != spec.ema_keys():
        raise CheckpointKeyError(
            f"{path}: the state-dict key order differs from the {spec.name} parameter order, so "
            "the EMA tuple cannot be aligned by position"
        )
    if len(ema) != len(keys):
        raise CheckpointKeyError(
            f"{path}: optimizer_states[0]['ema'] has {len(ema)} tensors, the {spec.name} layout "
            f"has {len(keys)} parameters"
        )
    for i, (key, value) in enumerate(zip(keys, ema)):
        current = state_dict[key]
        if value.shape != current.shape or value.dtype != current.dtype:
            raise CheckpointKeyError(
                f"{path}: EMA tensor {i} for {key} is {tuple(value.shape)} {_dtype_name(value.dtype)}, "
                f"the weight is {tuple(current.shape)} {_dtype_name(current.dtype)}"
            )
        state_dict[key] = value


def _canonicalise(state_dict: Mapping[str, torch.Tensor], spec: KeySpec, alias_values: str) -> dict[str, torch.Tensor]:
    """Drop step counters and alias names; resolve each alias group to one value.

    ``"jmp"``: the value of the group's LAST name in state-dict order (what ``load_state_dict``
    leaves in the shared tensor); ``"ema"``: the canonical (first) name's value.
    """
    entries = spec.by_name
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        entry = entries[_normalise_step_key(key)]
        if entry.group == "task_step_counters":
            continue
        if entry.alias_of is None:
            out[key] = value
        elif alias_values == "jmp":
            out[entry.alias_of] = value  # later names overwrite earlier ones, as load_state_dict does
    return out


def _check_aliases_consistent(state_dict: Mapping[str, torch.Tensor], spec: KeySpec, path: Path) -> None:
    for entry in spec.entries:
        if entry.alias_of is None:
            continue
        a, b = state_dict[entry.name], state_dict[entry.alias_of]
        if a.is_meta or b.is_meta:  # shape-only checkpoints (tests of the full layouts)
            continue
        if not torch.equal(a, b):
            raise CheckpointKeyError(
                f"{path}: {entry.name} should be the same tensor as {entry.alias_of} but differs"
            )


def load_jmp_checkpoint(
    path: str | Path,
    use_ema: bool = True,
    *,
    alias_values: Literal["jmp", "ema"] = "jmp",
    key_spec: KeySpec | None = None,
    backbone_config: Any = None,
    mmap: bool | None = None,
) -> JMPCheckpoint:
    """Read a published JMP checkpoint safely and return its weights in openjmp's keys.

    ``use_ema``: substitute ``optimizer_states[0]["ema"]`` (default, as JMP's fine-tuning does);
    ``False`` returns the raw training weights. ``alias_values``: see the module docstring.
    ``key_spec``: expected layout (default: detect JMP-S / JMP-L); ``backbone_config``: overrides
    the preset config (needed for custom layouts). Errors name the file and the keys.
    """
    path = Path(path)
    if alias_values not in ("jmp", "ema"):
        raise ValueError(f"alias_values must be 'jmp' or 'ema', got {alias_values!r}")
    ckpt = load_checkpoint_file(path, mmap=mmap)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        top = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict'; found {top})")
    raw_sd: dict[str, Any] = dict(ckpt["state_dict"])
    not_tensors = [k for k, v in raw_sd.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {_listing(not_tensors)}")

    spec = key_spec if key_spec is not None else detect_variant(raw_sd, source=str(path))
    check_state_dict(raw_sd, spec, source=str(path))
    _check_aliases_consistent(raw_sd, spec, path)

    weights = dict(raw_sd)
    ema_decay = None
    if use_ema:
        ema, ema_decay = _ema_tuple(ckpt, path)
        _apply_ema(weights, spec, ema, path)
    # detach from the memory-mapped file: the result must not depend on the file staying put
    state_dict = {k: v.detach().clone() for k, v in _canonicalise(weights, spec, alias_values).items()}

    if backbone_config is None and spec.name in PUBLISHED_VARIANTS:
        from openjmp.models.gemnet_oc.config import load_preset

        backbone_config = load_preset(PUBLISHED_VARIANTS[spec.name][1])
    hyper_parameters = to_plain_data(ckpt.get("hyper_parameters"))
    file_backbone = _plain_backbone_hparams(hyper_parameters)
    num_tasks = len({k.split(".")[2] for k in state_dict if k.startswith("output.out_energy.")})
    task_names = spec.task_order or tuple(f"task{t}" for t in range(num_tasks))

    return JMPCheckpoint(
        path=path,
        variant=spec.name,
        key_spec=spec,
        state_dict=state_dict,
        used_ema=use_ema,
        alias_values=alias_values,
        task_names=tuple(task_names),
        backbone_config=backbone_config,
        checkpoint_backbone_hparams=file_backbone,
        config_differences=_config_differences(file_backbone, backbone_config),
        epoch=ckpt.get("epoch") if isinstance(ckpt.get("epoch"), int) else None,
        global_step=ckpt.get("global_step") if isinstance(ckpt.get("global_step"), int) else None,
        lightning_version=ckpt.get("pytorch-lightning_version"),
        ema_decay=ema_decay,
        hyper_parameters=hyper_parameters,
        placeholders=find_placeholders(ckpt),
    )
