"""What a training run prints: a live bar in a terminal, progress lines in a log, nothing a user
cannot act on.

* :func:`verbosity` / :func:`set_verbosity`: ``-1`` quiet (errors and the final result only),
  ``0`` normal, ``1`` verbose (Lightning's own messages and every warning). Kept in
  ``$OPENJMP_VERBOSITY`` so worker processes inherit it (``openjmp --quiet`` / ``--verbose``).
  These and :func:`progress_line` / :func:`format_duration` live in :mod:`openjmp.progress`
  (no Lightning import; also the ``md`` / ``relax`` / ``study`` / ``data generate`` reporter).
* :func:`quiet_lightning`: drops Lightning's advertisements ("💡 Tip: ... litlogger / litmodels")
  and messages about hardware that is not there, and warnings a user cannot act on (unless
  verbose).
* :class:`ProgressLog`: when stdout is not a terminal (a log file, a pipe), one line
  ``step 40/500 (8%) | 1.32 steps/s | ETA 5m48s | loss 0.4312 | elapsed 30s`` at the first step,
  then at least every ``interval_s`` seconds (``$OPENJMP_PROGRESS_INTERVAL``, default 30) and at
  the last step, and one line after each validation.
* :class:`StepRichProgressBar`: the terminal bar, labelled with the optimiser step out of the
  run's total (never Lightning's "Epoch 0/-2" of step-bounded runs).
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from typing import Any

# the Lightning-free helpers live in openjmp.progress (openjmp.data and the CLI use them); the
# names stay importable from here
from openjmp.progress import (  # noqa: F401
    DEFAULT_INTERVAL_S,
    ENV_INTERVAL,
    ENV_VERBOSITY,
    _interval,
    format_duration,
    interval,
    progress_line,
    set_verbosity,
    stdout_is_terminal,
    verbosity,
)

#: Lightning messages nobody running openjmp can act on (advertisements, absent hardware)
_NOISE = ("💡 Tip", "litlogger", "litmodels", "TPU available", "HPU available", "GPU available: False",
          "IPU available", "You are using a CUDA device", "LOCAL_RANK:", "`Trainer.fit` stopped")
#: warnings about choices openjmp makes on the user's behalf (message regexes)
_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",
    r"The number of training batches .* is smaller than the logging interval",
    r".*does not have many workers which may be a bottleneck",
    r".*`max_epochs` was not set",
    r".*Checkpoint directory .* exists and is not empty",
    r".*The '(train|val|test)_dataloader' does not have many workers",
    r".*Experiment logs directory .* exists and is not empty",
    r".*Total length of .* across ranks is zero",
    r".*the `srun` command is available on your system",
    r".*You have overridden `transfer_batch_to_device` in `LightningModule`",
)


class _NoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        level = verbosity()
        if level >= 1:
            return True
        if level < 0 and record.levelno < logging.WARNING:
            return False
        message = record.getMessage()
        return not any(token in message for token in _NOISE)


_FILTER = _NoiseFilter()


def quiet_lightning() -> None:
    """Install the filters (idempotent): on Lightning's loggers and their handlers, and the
    warning filters (all warnings off with ``--quiet``, all on with ``--verbose``)."""
    level = verbosity()
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.distributed"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    if level >= 1:
        return
    if level < 0:
        warnings.filterwarnings("ignore")
        return
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def _metric(trainer, *names: str) -> float | None:
    metrics = dict(getattr(trainer, "callback_metrics", {}) or {})
    metrics.update(getattr(trainer, "progress_bar_metrics", {}) or {})
    for name in names:
        value = metrics.get(name)
        if value is not None:
            try:
                return float(value)
            except (TypeError, ValueError):
                continue
    return None


def _callback_base():
    from lightning.pytorch.callbacks import Callback

    return Callback


class ProgressLog(_callback_base()):
    """Progress lines for logs (see the module docstring)."""

    def __init__(self, label: str = "fine-tune", interval_s: float | None = None, stream=None) -> None:
        super().__init__()
        self.label = label
        self.interval_s = _interval() if interval_s is None else float(interval_s)
        self.stream = stream
        self.t0 = 0.0
        self.last = 0.0
        self.first_step = 0
        self.printed_step = -1

    def _print(self, text: str) -> None:
        if verbosity() < 0:
            return
        print(f"[{self.label}] {text}", file=self.stream or sys.stdout, flush=True)

    def on_train_start(self, trainer, pl_module) -> None:
        self.t0 = self.last = time.perf_counter()
        self.first_step = int(trainer.global_step)
        if not trainer.is_global_zero:
            return
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self._print(f"training {total if total else '?'} steps (progress every "
                    f"{self.interval_s:.0f} s; loss = training loss of the last step)")

    def _total(self, trainer) -> int | None:
        return trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        now = time.perf_counter()
        step = int(trainer.global_step)
        total = self._total(trainer)
        first = step == self.first_step + 1
        last = total is not None and step >= total
        if not (first or last or now - self.last >= self.interval_s) or step == self.printed_step:
            return
        loss = None
        if isinstance(outputs, dict) and "loss" in outputs:
            try:
                loss = float(outputs["loss"])
            except (TypeError, ValueError):
                loss = None
        elif outputs is not None and hasattr(outputs, "item"):
            loss = float(outputs.item())
        if loss is None:
            loss = _metric(trainer, "train/loss", "train/loss_step")
        self._print(progress_line(step, total, now - self.t0, loss, first_step=self.first_step))
        self.last = now
        self.printed_step = step

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        val = _metric(trainer, "val/loss")
        best = getattr(pl_module, "best_val", None)
        text = f"validation at step {int(trainer.global_step)}"
        if val is not None:
            text += f": val/loss {val:.4g}"
        if isinstance(best, (int, float)) and math.isfinite(best):
            text += f" (best {best:.4g})"
        self._print(text + f" | elapsed {format_duration(time.perf_counter() - self.t0)}")
        self.last = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._print(f"done: {int(trainer.global_step)} steps in "
                        f"{format_duration(time.perf_counter() - self.t0)}")


def step_progress_bar():
    """A RichProgressBar labelled ``step N/TOTAL`` (a terminal only)."""
    from lightning.pytorch.callbacks import RichProgressBar

    class StepRichProgressBar(RichProgressBar):
        def _get_train_description(self, current_epoch: int) -> str:
            trainer = self.trainer
            total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
            text = f"step {trainer.global_step}" + (f"/{total}" if total else "")
            return f"{text:<{max(len(self.validation_description), 16)}}"

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            if self.progress is not None and self.train_progress_bar_id is not None:
                self.progress.update(self.train_progress_bar_id,
                                     description=self._get_train_description(trainer.current_epoch))

    return StepRichProgressBar()
