"""Configuration of pre-training (``openjmp pretrain --config FILE.yaml``).

Defaults follow the JMP recipe (``shared/jmp-recipe.md``): AdamW lr 3e-4, betas (0.9, 0.95),
weight decay 0.1, grad-norm clip 1.0, warm-up from 0.2·lr then cosine to 0.1·lr, EMA 0.99,
temperature T = 2, structure-wise loss reduction, edge dropout 0.1 on the a2a graph.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GraphConfig(_Strict):
    """Graph settings of one dataset: one cutoff for the four GemNet-OC graphs (Å) and the main
    graph's neighbour cap; the other caps follow JMP's proportions (a2ee2a 20/30, qint 8/30,
    a2a 1000/30) unless given."""

    cutoff: float = Field(12.0, gt=0)
    #: per-graph cutoffs (Å), default ``cutoff``; models with ``rbf_cutoffs`` need these equal
    #: to their radial cutoffs (docs/forces.md). a2a's must be the largest.
    cutoff_main: float | None = Field(None, gt=0)
    cutoff_a2ee2a: float | None = Field(None, gt=0)
    cutoff_qint: float | None = Field(None, gt=0)
    cutoff_a2a: float | None = Field(None, gt=0)
    max_neighbors: int = Field(30, ge=1)
    max_neighbors_a2ee2a: int | None = None
    max_neighbors_qint: int | None = None
    max_neighbors_a2a: int | None = None
    #: size-conditional main caps [[threshold, cap], ...], thresholds strictly ascending: a
    #: structure of more than ``threshold`` atoms gets ``cap`` (last matching rule), the other
    #: graphs JMP's proportions of it. JMP MatBench/QMOF: [[200, 10], [300, 5]] with 30.
    max_neighbors_by_natoms: list[tuple[int, int]] | None = None
    pbc: bool | None = None  # None: as the records say

    @model_validator(mode="after")
    def _check_conditional_caps(self):
        rules = self.max_neighbors_by_natoms
        if not rules:
            return self
        thresholds = [t for t, _ in rules]
        if any(t < 0 for t in thresholds) or any(b <= a for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError(f"max_neighbors_by_natoms: thresholds must be >= 0 and strictly ascending, got {thresholds}")
        if any(c < 1 for _, c in rules):
            raise ValueError(f"max_neighbors_by_natoms: caps must be >= 1, got {[c for _, c in rules]}")
        explicit = [k for k in ("max_neighbors_a2ee2a", "max_neighbors_qint", "max_neighbors_a2a")
                    if getattr(self, k) is not None]
        if explicit:
            raise ValueError(f"max_neighbors_by_natoms scales every graph's cap by JMP's proportions; "
                             f"it cannot be combined with {explicit}")
        return self

    def settings(self):
        """The data layer's :class:`~openjmp.data.graphs.goc.GOCGraphSettings` of this entry
        (caps per structure size: ``settings().for_natoms(n)``)."""
        from openjmp.data.graphs.goc import GOCGraphSettings

        return GOCGraphSettings.from_graph_dict(self.model_dump(mode="json"))


class NormalizationConfig(_Strict):
    """Normalisation constants of one dataset: fixed values where given, the rest fitted on a
    seeded subsample of at most ``fit_records`` training records (streamed from the source).

    ``linear_reference`` (used only when the dataset's ``linear_reference`` is true): None → fit;
    a list of 120 eV-per-atom values indexed by atomic number (index 0 unused); a mapping
    element symbol or atomic number → eV per atom (other elements 0); or the path of a JSON file
    holding either form (relative to the config file; read before training starts).
    """

    linear_reference: list[float] | dict[str | int, float] | str | None = None
    energy_mean: float | None = None  # eV
    energy_std: float | None = Field(None, gt=0)  # eV
    force_std: float | None = Field(None, gt=0)  # eV/Å
    fit_records: int | None = Field(100_000, ge=1)  # None: every training record

    @field_validator("linear_reference", mode="after")
    @classmethod
    def _check_reference(cls, v):
        if isinstance(v, list | dict):
            from openjmp.training.normalization import linear_reference_array

            linear_reference_array(v, "linear_reference")  # raises with the reason
        return v

    @field_validator("energy_mean", "energy_std", "force_std", mode="after")
    @classmethod
    def _finite(cls, v):
        if v is not None and not math.isfinite(v):
            raise ValueError(f"must be finite, got {v}")
        return v

    @property
    def fully_fixed_scales(self) -> bool:
        return None not in (self.energy_mean, self.energy_std, self.force_std)


class SourceConfig(_Strict):
    """Where a dataset's records come from and how they are split (shared by pre-training
    datasets and the datasets replayed during fine-tuning)."""

    name: str
    path: Path
    format: str | None = None  # detected from the path when omitted
    reader_options: dict[str, Any] = Field(default_factory=dict)
    #: a separate source for validation records (e.g. OC20's val folder); all its records are used
    val_path: Path | None = None
    train_split: str = "train"
    val_split: str = "val"
    #: fraction of records held out for validation when the source defines no splits
    val_fraction: float = Field(0.1, gt=0, lt=1)
    max_train_records: int | None = Field(None, ge=1)
    max_val_records: int | None = Field(None, ge=1)

    def resolve_paths(self, base: Path) -> None:
        """Make ``path`` and ``val_path`` absolute (see `resolve_path`)."""
        self.path = resolve_path(self.path, base)
        if self.val_path is not None:
            self.val_path = resolve_path(self.val_path, base)


class DatasetConfig(SourceConfig):
    """One pre-training dataset (= one task with its own energy and force heads).

    A converted openjmp store (``openjmp data convert``; ``format: store`` or a store folder
    detected from the path) is read lazily: records are read and their graphs built on demand,
    the sampler takes sizes and atom counts from the store metadata. Other sources are read into
    memory with cached graphs (``streaming: false`` reads a store that way too).
    """

    #: None: stream when the source is a store; true: require a store; false: read into memory
    streaming: bool | None = None
    graph: GraphConfig = Field(default_factory=GraphConfig)
    energy_coefficient: float = Field(1.0, ge=0)
    force_coefficient: float = Field(1.0, ge=0)
    linear_reference: bool = True
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)

    @model_validator(mode="after")
    def _reference_needs_switch(self):
        if not self.linear_reference and self.normalization.linear_reference is not None:
            raise ValueError(
                f"dataset {self.name!r}: normalization.linear_reference is given but linear_reference is false"
            )
        return self

    def resolve(self, base: Path) -> None:
        self.resolve_paths(base)
        if isinstance(self.normalization.linear_reference, str):
            self.normalization.linear_reference = str(resolve_path(Path(self.normalization.linear_reference), base))


_UNSET_VARIABLE = re.compile(r"\$(\w+|\{\w+\})")


def unset_variables(path) -> list[str]:
    """Names of ``$VAR`` / ``${VAR}`` left in ``path`` (variables not set when it was resolved)."""
    return [m.group(1).strip("{}") for m in _UNSET_VARIABLE.finditer(str(path))]


def resolve_path(path: Path, base: Path) -> Path:
    """``asset://mini/...`` → the packaged asset; ``$VAR`` / ``${VAR}`` → the environment
    variable's value; ``~/...`` → the home folder; relative paths → relative to ``base``.

    A path naming a variable that is not set is returned as written (not made absolute) so that
    the error for a missing dataset shows it; see `unset_variables`.
    """
    from openjmp.assets import ASSET_SCHEME, asset_path

    text = str(path)
    if text.startswith(ASSET_SCHEME):
        return asset_path(text)
    text = os.path.expandvars(text)
    if unset_variables(text):
        return Path(text)
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


class ModelConfig(_Strict):
    """Backbone: a named preset (``jmp_s``, ``jmp_l``) and/or explicit fields overriding it."""

    preset: str | None = None
    backbone: dict[str, Any] = Field(default_factory=dict)
    head_layers: int = Field(5, ge=1)
    edge_dropout: float = Field(0.1, ge=0, lt=1)


class SamplerConfig(_Strict):
    temperature: float = Field(2.0, gt=0)
    batch_size: int = Field(8, ge=1)  # per process
    epoch_size: int | None = Field(None, ge=1)  # structures per epoch over all processes
    balance_atoms: bool = False
    num_workers: int = Field(0, ge=0)

    @field_validator("temperature", mode="before")
    @classmethod
    def _inf(cls, v):
        return math.inf if isinstance(v, str) and v.lower() in ("inf", "infinity") else v


class OptimConfig(_Strict):
    lr: float = Field(3e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.1, ge=0)
    no_decay_embeddings: bool = True
    warmup_steps: int = Field(2000, ge=0)
    warmup_start_factor: float = Field(0.2, gt=0, le=1)
    min_lr_factor: float = Field(0.1, ge=0, le=1)
    #: cosine length in steps (default: max_steps) ...
    cosine_steps: int | None = Field(None, ge=1)
    #: ... or in epochs of the sampler (``sampler.epoch_size`` structures; JMP: 2)
    cosine_epochs: float | None = Field(None, gt=0)
    grad_clip_norm: float | None = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _one_cosine_length(self):
        if self.cosine_steps is not None and self.cosine_epochs is not None:
            raise ValueError("give cosine_steps or cosine_epochs, not both")
        return self


class EMAConfig(_Strict):
    enabled: bool = True
    decay: float = Field(0.99, ge=0, lt=1)


class LossConfig(_Strict):
    reduction: Literal["structure", "atom"] = "structure"


class TrainerConfig(_Strict):
    max_steps: int = Field(1000, ge=1)
    #: stop after this many sampler epochs as well (None: max_steps alone)
    max_epochs: int | None = Field(None, ge=1)
    val_every_n_steps: int = Field(200, ge=1)
    checkpoint_every_n_steps: int = Field(200, ge=1)
    log_every_n_steps: int = Field(10, ge=1)
    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_nan_batches: int = Field(10, ge=0)
    max_time_minutes: float | None = Field(None, gt=0)
    progress_bar: bool = True
    tensorboard: bool = True
    deterministic: bool = True
    #: recompute each interaction block in the backward pass instead of storing its activations
    #: (GemNet-OC activation checkpointing): ~1/num_blocks of the activation memory for ~1/3
    #: more compute; for large structures on a GPU (docs/gpu.md)
    activation_checkpointing: bool = False


class PretrainConfig(_Strict):
    seed: int = 0
    output_dir: Path = Path("runs/pretrain")
    dtype: Literal["float32", "float64"] = "float32"
    model: ModelConfig = Field(default_factory=ModelConfig)
    datasets: list[DatasetConfig]
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)

    @model_validator(mode="after")
    def _unique_names(self):
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be unique, got {names}")
        if not names:
            raise ValueError("at least one dataset is required")
        return self

    def resolve_paths(self, base: Path) -> None:
        for d in self.datasets:
            d.resolve(base)
        self.output_dir = Path(os.path.expandvars(str(self.output_dir))).expanduser()
        if not self.output_dir.is_absolute():
            self.output_dir = Path.cwd() / self.output_dir
