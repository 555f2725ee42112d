"""Epoch-based fine-tuning schedules (JMP: 5 warm-up epochs, cosine over 32, validation and
patiences per epoch): validation of the fields, conversion to steps, and a run whose learning
rate and validation steps follow the epochs of its training loader."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_helpers import write_emt_molecules
from lightning.pytorch.callbacks import Callback
from pydantic import ValidationError

from openjmp.training.finetune_config import (
    FinetuneConfig,
    FinetuneOptimConfig,
    FinetuneTrainerConfig,
    step_schedule,
)


def _cfg(tmp_path, optim=None, trainer=None) -> FinetuneConfig:
    return FinetuneConfig.model_validate({
        "init": {"kind": "scratch", "preset": "openjmp_tiny"},
        "data": {"path": str(tmp_path)},
        "targets": [{"name": "y", "kind": "scalar"}],
        "optim": optim or {}, "trainer": trainer or {},
    })


@pytest.mark.parametrize("fields, message", [
    ({"warmup_steps": 10, "warmup_epochs": 1}, "warmup_steps or optim.warmup_epochs"),
    ({"cosine_steps": 10, "cosine_epochs": 2}, "cosine_steps or optim.cosine_epochs"),
])
def test_steps_and_epochs_are_exclusive_in_optim(fields, message):
    with pytest.raises(ValidationError, match=message):
        FinetuneOptimConfig(**fields)


def test_steps_and_epochs_are_exclusive_for_validation():
    with pytest.raises(ValidationError, match="val_every_n_steps or trainer.val_every_n_epochs"):
        FinetuneTrainerConfig(val_every_n_steps=5, val_every_n_epochs=1)
    with pytest.raises(ValidationError):
        FinetuneOptimConfig(warmup_epochs=-1)


def test_config_round_trips_through_model_dump(tmp_path):
    cfg = _cfg(tmp_path, {"warmup_epochs": 5, "cosine_epochs": 32}, {"max_epochs": 500, "val_every_n_epochs": 1})
    again = FinetuneConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg


def test_conversion_to_steps(tmp_path):
    cfg = _cfg(tmp_path, {"warmup_epochs": 5, "cosine_epochs": 32}, {"max_epochs": 500, "val_every_n_epochs": 1})
    s = step_schedule(cfg, 2310)
    assert (s.warmup_steps, s.cosine_steps, s.max_steps, s.val_every_n_steps) == (5 * 2310, 32 * 2310, 500 * 2310, 2310)
    assert s.steps_per_epoch == 2310
    # fractional epochs round to the nearest step; max_steps and max_epochs: the first reached
    cfg = _cfg(tmp_path, {"warmup_epochs": 0.5, "cosine_epochs": 1.25}, {"max_steps": 7, "max_epochs": 3,
                                                                        "val_every_n_epochs": 2})
    s = step_schedule(cfg, 10)
    assert (s.warmup_steps, s.cosine_steps, s.max_steps, s.val_every_n_steps) == (5, 12, 7, 20)
    with pytest.raises(ValueError, match="warmup_epochs.*steps per epoch"):
        step_schedule(cfg, None)


def test_step_fields_and_defaults_are_unchanged(tmp_path):
    s = step_schedule(_cfg(tmp_path), None)
    assert (s.warmup_steps, s.cosine_steps, s.max_steps, s.val_every_n_steps) == (100, 1000, 1000, 100)
    s = step_schedule(_cfg(tmp_path, {"warmup_steps": 3, "cosine_steps": 40}, {"max_steps": 50, "val_every_n_steps": 5}), 99)
    assert (s.warmup_steps, s.cosine_steps, s.max_steps, s.val_every_n_steps) == (3, 40, 50, 5)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sched")
    write_emt_molecules(folder / "mols.extxyz", 30, lambda i, m: {"y": float(len(m)) + 0.1 * np.sin(i)})
    return folder


class _LRRecorder(Callback):
    """The base learning rate (group 0) before every optimizer step, and the validation steps."""

    def __init__(self):
        self.lrs, self.val_steps = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        group = trainer.optimizers[0].param_groups[0]
        self.lrs.append(group["lr"] / group.get("lr_multiplier", 1.0))

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.val_steps.append(trainer.global_step)


def test_run_counts_epochs_of_the_training_loader(small_data, tmp_path):
    from openjmp.configuration import load_config
    from openjmp.training.finetune import run_finetuning

    cfg = load_config(FinetuneConfig, data={
        "seed": 0, "output_dir": str(tmp_path / "out"),
        "init": {"kind": "scratch", "preset": "openjmp_tiny"},
        "data": {"path": str(small_data / "mols.extxyz"), "format": "ase",
                 "graph": {"cutoff": 4.0, "max_neighbors": 10}, "batch_size": 8,
                 "val_fraction": 0.1, "test_fraction": 0.1},
        "targets": [{"name": "y", "kind": "scalar", "reference": "none"}],
        "head_layers": 2,
        "optim": {"lr": 1e-3, "warmup_epochs": 1, "cosine_epochs": 2, "warmup_start_factor": 0.1,
                  "min_lr_factor": 0.1},
        "trainer": {"max_epochs": 3, "val_every_n_epochs": 1, "early_stopping_patience": None,
                    "progress_bar": False},
    })
    recorder = _LRRecorder()
    summary = run_finetuning(cfg, callbacks=[recorder])
    spe = summary["train_records"] // 8  # drop_last: full batches only
    assert spe >= 2
    sched = summary["schedule"]
    assert sched["steps_per_epoch"] == spe
    assert (sched["warmup_steps"], sched["cosine_steps"], sched["max_steps"]) == (spe, 2 * spe, 3 * spe)
    assert summary["steps"] == 3 * spe
    # validation at the end of every epoch
    assert recorder.val_steps == [spe, 2 * spe, 3 * spe]
    assert [v["step"] for v in summary["validation"]] == [spe, 2 * spe, 3 * spe]
    lrs = recorder.lrs
    assert lrs[0] == pytest.approx(1e-4)  # warm-up from 0.1 lr
    assert lrs[spe] == pytest.approx(1e-3)  # end of the warm-up epoch
    assert lrs[2 * spe] == pytest.approx(1e-4)  # end of the cosine (epoch 2): 0.1 lr
    assert all(a < b for a, b in zip(lrs[:spe], lrs[1:spe + 1]))
