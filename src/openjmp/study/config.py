"""Configuration of the miniature JMP study (``openjmp study``).

A study fine-tunes every task twice — from the pre-trained backbone ("jmp") and from random
initialisation of the same architecture ("scratch") — under rules fixed before any result is
seen (they are copied into the report):

* same training / validation / test records, same number of optimisation steps and the same
  wall-time cap for both arms;
* each arm picks its own learning rate from the same grid, on the validation loss only;
* training-set sizes are fixed per task; the test split is never used for any choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudyTask(_Strict):
    name: str
    description: str = ""
    domain: str
    #: whether the task's domain (chemistry + level of theory) was in pre-training
    in_pretraining_domain: bool
    #: key of the test metrics (e.g. "energy/forces" or "gap") and the metric field ("mae")
    primary_metric: str
    primary_field: str = "mae"
    #: factor and unit to report the primary metric in (e.g. 1000, "meV/Å")
    report_scale: float = 1.0
    report_unit: str = ""
    #: a FinetuneConfig without seed / output_dir / init
    finetune: dict[str, Any]


class StudyConfig(_Strict):
    #: registry name (e.g. openjmp-mini) or path of the pre-trained model file
    pretrained: str = "openjmp-mini"
    #: pre-training config used by --pretrain (re-runs pre-training instead of the shipped weights)
    pretrain_config: str = "configs/pretrain/mini.yaml"
    steps: int = Field(300, ge=1)
    val_every_n_steps: int = Field(50, ge=1)
    lr_grid: list[float] = Field(default_factory=lambda: [3e-4, 1e-3])
    seeds: list[int] = Field(default_factory=lambda: [0])
    #: wall-time cap per fine-tuning run (both arms alike), minutes
    run_time_cap_minutes: float = Field(3.0, gt=0)
    tasks: list[StudyTask]

    @model_validator(mode="after")
    def _check(self):
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique: {names}")
        if not self.lr_grid:
            raise ValueError("lr_grid must not be empty")
        return self

    def resolve_paths(self, base: Path) -> None:
        self._base = base

    @property
    def base(self) -> Path:
        return getattr(self, "_base", Path.cwd())
