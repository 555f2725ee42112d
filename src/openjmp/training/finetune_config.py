"""Configuration of fine-tuning (``openjmp finetune --config FILE.yaml``).

Defaults follow JMP's fine-tuning recipe (``shared/jmp-recipe.md``): AdamW lr 8e-5, betas
(0.9, 0.95), weight decay 0.1, gradient clipping by value 1.0, warm-up from 0.1·lr then cosine
to 0.1·lr, then ReduceLROnPlateau (factor 0.8, patience 3), early stopping, EMA 0.99, new
5-layer MLP heads, layer-wise learning-rate decay.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openjmp.models.lora import LoRAConfig
from openjmp.training.config import EMAConfig, GraphConfig, resolve_path
from openjmp.training.replay import ReplayConfig

#: JMP's layer-wise LR multipliers (embedding, then blocks 0..n-1)
LLRD_PRESETS: dict[str, dict[str, Any]] = {
    "jmp_s": {"embedding": 0.3, "blocks": [0.30, 0.40, 0.55, 0.625]},
    "jmp_l": {"embedding": 0.3, "blocks": [0.55, 0.40, 0.30, 0.40, 0.55, 0.625]},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InitConfig(_Strict):
    """Where the backbone starts from.

    * ``pretrained``: an openjmp model file (path, or a registry name with local weights);
    * ``jmp``: a published JMP-S / JMP-L Lightning checkpoint (EMA weights by default);
    * ``scratch``: random initialisation of the same architecture (the fair baseline).
    """

    kind: Literal["pretrained", "jmp", "scratch"] = "pretrained"
    checkpoint: str | None = None
    use_ema: bool = True
    #: scratch: preset name and/or backbone fields (pretrained/jmp: taken from the checkpoint;
    #: when given they must match it)
    preset: str | None = None
    backbone: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _needs_checkpoint(self):
        if self.kind in ("pretrained", "jmp") and not self.checkpoint:
            raise ValueError(f"init.kind={self.kind!r} needs init.checkpoint")
        if self.kind == "scratch" and not (self.preset or self.backbone or self.checkpoint):
            raise ValueError("init.kind='scratch' needs init.preset, init.backbone or init.checkpoint (architecture only)")
        return self


class DataConfig(_Strict):
    path: Path
    format: str | None = None
    reader_options: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    #: used only when the source defines no splits
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)
    #: fixed training-set size (seeded subsample); validation size likewise
    max_train_records: int | None = Field(None, ge=1)
    max_val_records: int | None = Field(None, ge=1)
    max_test_records: int | None = Field(None, ge=1)
    graph: GraphConfig = Field(default_factory=GraphConfig)
    batch_size: int = Field(8, ge=1)


class TargetConfig(_Strict):
    """One fine-tuning target.

    * ``energy_forces``: total energy (record.energy) and forces; forces ``gradient`` (−dE/dx,
      conservative) or ``direct``; optional stress for periodic structures.
    * ``scalar``: graph-level regression of ``record.targets[key]`` with a sum/mean/max readout.
    * ``classification``: binary target (0/1) with class weights and dropout.

    ``reduction: spatial_extent`` (scalar targets): JMP's mass-weighted spatial-extent head for
    QM9's <R²>, Σ_i q_i |r_i - r_cm|² with q_i the per-atom head output and r_cm the centre of
    mass; normalised by a scale only (mean 0) and without an element reference.
    """

    name: str
    kind: Literal["energy_forces", "scalar", "classification"]
    key: str | None = None  # record.targets key (default: name)
    reduction: Literal["sum", "mean", "max", "spatial_extent"] = "sum"
    #: per-element linear reference: none; "average" (least squares on the training split's
    #: labels); "estimated" (the ``init_head``'s pre-training reference plus a least-squares
    #: per-element correction of its zero-shot errors on the training split)
    reference: Literal["none", "average", "estimated"] = "average"
    #: start this target's head from a pre-training head of the init checkpoint (the name of a
    #: pre-training dataset, e.g. "mini-ani1x"): energy_forces targets take its energy MLP (and
    #: for direct forces its force MLP) and its energy/force scales; scalar targets its energy
    #: MLP. Only with init.kind "pretrained".
    init_head: str | None = None
    normalize: bool = True
    loss_coefficient: float = Field(1.0, ge=0)
    energy_coefficient: float = Field(1.0, ge=0)
    force_coefficient: float = Field(10.0, ge=0)
    forces: Literal["gradient", "direct"] = "gradient"
    stress: bool = False
    stress_coefficient: float = Field(0.0, ge=0)
    class_weights: tuple[float, float] = (1.0, 1.0)
    dropout: float = Field(0.0, ge=0, lt=1)

    @property
    def target_key(self) -> str:
        return self.key or self.name

    @model_validator(mode="after")
    def _check_spatial_extent(self):
        if self.reduction == "spatial_extent":
            if self.kind != "scalar":
                raise ValueError(f"target {self.name!r}: reduction 'spatial_extent' is for scalar targets, "
                                 f"not {self.kind!r}")
            if self.reference != "none":
                raise ValueError(f"target {self.name!r}: reduction 'spatial_extent' needs reference: none "
                                 "(a per-element offset is not a spatial extent)")
        return self

    @model_validator(mode="after")
    def _check_init_head(self):
        if self.init_head is not None and self.kind == "classification":
            raise ValueError(f"target {self.name!r}: init_head is for energy_forces and scalar targets")
        if self.reference == "estimated" and (self.init_head is None or self.kind != "energy_forces"):
            raise ValueError(f"target {self.name!r}: reference 'estimated' corrects a pre-trained energy head's "
                             "predictions; it needs kind energy_forces and init_head")
        return self


class LLRDConfig(_Strict):
    """Layer-wise LR multipliers: ``preset`` (jmp_s, jmp_l) or explicit values. The embedding
    group is the atom embedding, the bases and output block 0; block i is interaction block i
    with output block i+1; everything else (global output MLPs, heads) gets 1."""

    preset: Literal["jmp_s", "jmp_l"] | None = None
    embedding: float | None = Field(None, ge=0)
    blocks: list[float] | None = None

    def multipliers(self, num_blocks: int) -> dict[str, float]:
        values: dict[str, Any] = dict(LLRD_PRESETS[self.preset]) if self.preset else {}
        if self.embedding is not None:
            values["embedding"] = self.embedding
        if self.blocks is not None:
            values["blocks"] = self.blocks
        if not values:
            return {}
        blocks = list(values.get("blocks") or [])
        if blocks and len(blocks) != num_blocks:
            raise ValueError(f"llrd has {len(blocks)} block multipliers but the backbone has {num_blocks} blocks")
        out: dict[str, float] = {}
        if "embedding" in values:
            for prefix in ("embedding.", "backbone.bases.", "backbone.out_blocks.0."):
                out[prefix] = float(values["embedding"])
        for i, f in enumerate(blocks):
            out[f"backbone.int_blocks.{i}."] = float(f)
            out[f"backbone.out_blocks.{i + 1}."] = float(f)
        return out


class FinetuneOptimConfig(_Strict):
    lr: float = Field(8e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.1, ge=0)
    #: warm-up length in optimizer steps, or in epochs of the training loader (JMP: 5 epochs);
    #: not both; neither: 100 steps. Epochs are converted to steps at the start of the run
    #: (`step_schedule`: steps/epoch = training batches per epoch).
    warmup_steps: int | None = Field(None, ge=0)
    warmup_epochs: float | None = Field(None, ge=0)
    warmup_start_factor: float = Field(0.1, gt=0, le=1)
    #: cosine length (warm-up included) in steps or epochs (JMP: 32 epochs); not both; neither:
    #: the run length. ReduceLROnPlateau takes over once it is over.
    cosine_steps: int | None = Field(None, ge=1)
    cosine_epochs: float | None = Field(None, gt=0)
    min_lr_factor: float = Field(0.1, ge=0, le=1)
    plateau_factor: float = Field(0.8, gt=0, lt=1)
    plateau_patience: int = Field(3, ge=1)
    grad_clip_value: float | None = Field(1.0, gt=0)
    llrd: LLRDConfig = Field(default_factory=LLRDConfig)
    #: freeze the embedding, bases and the first N interaction blocks
    freeze_blocks: int = Field(0, ge=0)
    freeze_backbone: bool = False
    #: low-rank adapters on the backbone's linear layers (models/lora.py); the rest of the
    #: embedding/backbone is then frozen, heads stay trainable
    lora: LoRAConfig | None = None

    @model_validator(mode="after")
    def _steps_or_epochs(self):
        for name in ("warmup", "cosine"):
            if getattr(self, f"{name}_steps") is not None and getattr(self, f"{name}_epochs") is not None:
                raise ValueError(f"give optim.{name}_steps or optim.{name}_epochs, not both")
        return self


class FinetuneTrainerConfig(_Strict):
    #: run length in steps and/or epochs of the training loader (the first reached stops);
    #: neither: 1000 steps
    max_steps: int | None = Field(None, ge=1)
    max_epochs: int | None = Field(None, ge=1)
    #: validation every N steps or every N epochs (not both); neither: every 100 steps. The
    #: plateau and early-stopping patiences count validations, so with val_every_n_epochs: 1
    #: they count epochs, as in JMP.
    val_every_n_steps: int | None = Field(None, ge=1)
    val_every_n_epochs: int | None = Field(None, ge=1)
    early_stopping_patience: int | None = Field(50, ge=1)  # in validations
    max_time_minutes: float | None = Field(None, gt=0)
    accelerator: str = "cpu"
    devices: int | str = 1
    precision: str = "32-true"
    progress_bar: bool = True
    log_every_n_steps: int = Field(10, ge=1)
    deterministic: bool = True
    #: recompute each interaction block in the backward pass instead of storing its activations
    #: (GemNet-OC activation checkpointing): ~1/num_blocks of the activation memory for ~1/3
    #: more compute; for large structures on a GPU (docs/gpu.md)
    activation_checkpointing: bool = False

    @model_validator(mode="after")
    def _steps_or_epochs(self):
        if self.val_every_n_steps is not None and self.val_every_n_epochs is not None:
            raise ValueError("give trainer.val_every_n_steps or trainer.val_every_n_epochs, not both")
        return self


DEFAULT_WARMUP_STEPS = 100
DEFAULT_MAX_STEPS = 1000
DEFAULT_VAL_EVERY_N_STEPS = 100


@dataclass(frozen=True)
class StepSchedule:
    """A run's schedule in optimizer steps (epoch-based settings converted)."""

    warmup_steps: int
    cosine_steps: int  # warm-up included; ReduceLROnPlateau afterwards
    max_steps: int
    val_every_n_steps: int
    steps_per_epoch: int | None


def step_schedule(cfg: FinetuneConfig, steps_per_epoch: int | None) -> StepSchedule:
    """Warm-up, cosine, run length and validation interval in steps.

    ``steps_per_epoch``: training batches per epoch (per process), needed only when a length is
    given in epochs (ValueError otherwise). Fractional epochs round to the nearest step."""
    o, t = cfg.optim, cfg.trainer
    epoch_fields = [f"optim.{k}" for k in ("warmup_epochs", "cosine_epochs") if getattr(o, k) is not None]
    epoch_fields += [f"trainer.{k}" for k in ("max_epochs", "val_every_n_epochs") if getattr(t, k) is not None]
    if epoch_fields and not steps_per_epoch:
        raise ValueError(f"{', '.join(epoch_fields)} count epochs: the number of steps per epoch is needed")
    spe = int(steps_per_epoch) if steps_per_epoch else None

    def steps(epochs: float, minimum: int) -> int:
        return max(minimum, round(epochs * spe))

    if t.max_epochs is not None:
        max_steps = steps(t.max_epochs, 1) if t.max_steps is None else min(t.max_steps, steps(t.max_epochs, 1))
    else:
        max_steps = t.max_steps if t.max_steps is not None else DEFAULT_MAX_STEPS
    warmup = (o.warmup_steps if o.warmup_steps is not None
              else steps(o.warmup_epochs, 0) if o.warmup_epochs is not None else DEFAULT_WARMUP_STEPS)
    cosine = (o.cosine_steps if o.cosine_steps is not None
              else steps(o.cosine_epochs, 1) if o.cosine_epochs is not None else max_steps)
    val = (t.val_every_n_steps if t.val_every_n_steps is not None
           else steps(t.val_every_n_epochs, 1) if t.val_every_n_epochs is not None else DEFAULT_VAL_EVERY_N_STEPS)
    return StepSchedule(warmup, cosine, max_steps, val, spe)


class FinetuneConfig(_Strict):
    seed: int = 0
    output_dir: Path = Path("runs/finetune")
    dtype: Literal["float32", "float64"] = "float32"
    init: InitConfig
    data: DataConfig
    targets: list[TargetConfig]
    head_layers: int = Field(5, ge=1)
    optim: FinetuneOptimConfig = Field(default_factory=FinetuneOptimConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    trainer: FinetuneTrainerConfig = Field(default_factory=FinetuneTrainerConfig)
    #: replay of pre-training datasets with their heads (training/replay.py)
    replay: ReplayConfig | None = None

    @model_validator(mode="after")
    def _check_replay(self):
        if self.replay is not None and self.init.kind != "pretrained":
            raise ValueError(f"replay needs init.kind 'pretrained' (the replayed heads and normalisers come from "
                             f"the pre-trained model file), got {self.init.kind!r}")
        return self

    @model_validator(mode="after")
    def _check_targets(self):
        names = [t.name for t in self.targets]
        if not names:
            raise ValueError("at least one target is required")
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique, got {names}")
        if sum(t.kind == "energy_forces" for t in self.targets) > 1:
            raise ValueError("at most one energy_forces target")
        reused = [t.name for t in self.targets if t.init_head]
        if reused and self.init.kind != "pretrained":
            raise ValueError(f"targets {reused} set init_head, which needs init.kind 'pretrained' "
                             f"(got {self.init.kind!r})")
        return self

    def resolve_paths(self, base: Path) -> None:
        self.data.path = resolve_path(self.data.path, base)
        if self.replay is not None:
            self.replay.resolve_paths(base)
        if self.init.checkpoint and ("/" in self.init.checkpoint or self.init.checkpoint.endswith((".pt", ".ckpt"))):
            self.init.checkpoint = str(resolve_path(Path(self.init.checkpoint), base))
        if not self.output_dir.is_absolute():
            self.output_dir = Path.cwd() / self.output_dir
