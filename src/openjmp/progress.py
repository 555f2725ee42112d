"""What a long-running verb prints while it works: a live bar in a terminal, progress lines in a
log, nothing with ``--quiet`` (issue 16, item 4).

* :func:`verbosity` / :func:`set_verbosity`: ``-1`` quiet (errors and the final result only),
  ``0`` normal, ``1`` verbose. Kept in ``$OPENJMP_VERBOSITY`` so worker processes inherit it
  (``openjmp --quiet`` / ``--verbose``).
* :func:`progress_line`: ``step 40/500 (8%) | 1.32 steps/s | ETA 5m48s | loss 0.4312 | elapsed 30s``.
* :class:`Progress`: the reporter of ``md``, ``relax``, ``study`` and ``data generate`` (training
  has Lightning callbacks in :mod:`openjmp.training.progress`): a ``rich`` bar when stdout is a
  terminal, else ``[label] step 40/500 (8%) | 1.32 steps/s | ETA 5m48s | ... | elapsed 30s`` at
  the first update, then at least every ``$OPENJMP_PROGRESS_INTERVAL`` seconds (default 30) and
  at the last. No thread: lines are printed from :meth:`Progress.update`.

No torch / Lightning import here: :mod:`openjmp.data` and the CLI use it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

ENV_VERBOSITY = "OPENJMP_VERBOSITY"
ENV_INTERVAL = "OPENJMP_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0
#: the live bar is redrawn at most this often (seconds)
LIVE_REFRESH_S = 0.1


def verbosity() -> int:
    try:
        return int(os.environ.get(ENV_VERBOSITY, "0"))
    except ValueError:
        return 0


def set_verbosity(level: int) -> None:
    os.environ[ENV_VERBOSITY] = str(int(level))


def interval() -> float:
    """Seconds between progress lines in a log (``$OPENJMP_PROGRESS_INTERVAL``, default 30)."""
    try:
        return float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S


_interval = interval  # the name openjmp.training.progress used


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m"


def format_rate(rate: float, unit: str = "step") -> str:
    """``1.32 steps/s``; below 0.1 per second the time per unit, ``42.0 s/run``."""
    if not math.isfinite(rate) or rate <= 0:
        return f"- {unit}s/s"
    if rate < 0.1:
        return f"{1.0 / rate:.1f} s/{unit}"
    return f"{rate:.2f} {unit}s/s"


def format_value(value: Any) -> str:
    if callable(value):
        value = value()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def progress_line(step: int, total: int | None, elapsed: float, loss: float | None = None,
                  label: str = "step", first_step: int = 0, fields: Mapping[str, Any] | None = None,
                  eta_bound: bool = False) -> str:
    """``step 40/500 (8%) | 1.32 steps/s | ETA 5m48s | loss 0.4312 | elapsed 30s``.

    ``label`` is the unit counted; ``first_step`` the count at ``elapsed`` 0 (a resumed run);
    ``fields`` extra ``name value`` parts (values may be callables); ``eta_bound``: ``total`` is
    a limit (an optimiser's step cap), the ETA an upper bound (``ETA ≤2m``).
    """
    done = step - first_step
    rate = done / elapsed if elapsed > 0 and done > 0 else float("nan")
    parts = []
    if total:
        parts.append(f"{label} {step}/{total} ({100.0 * step / total:.0f}%)")
    else:
        parts.append(f"{label} {step}")
    parts.append(format_rate(rate, label))
    if total:
        eta = max(total - step, 0) / rate if math.isfinite(rate) and rate > 0 else float("nan")
        parts.append(f"ETA {'≤' if eta_bound and step < total else ''}{format_duration(eta)}")
    if loss is not None and math.isfinite(loss):
        parts.append(f"loss {loss:.4g}")
    for name, value in (fields or {}).items():
        parts.append(f"{name} {format_value(value)}")
    parts.append(f"elapsed {format_duration(elapsed)}")
    return " | ".join(parts)


class Progress:
    """Progress of ``total`` units of work (MD steps, optimiser steps, runs, work items).

    ::

        with Progress("md", total=1000, unit="step") as bar:
            for step in range(1, 1001):
                ...
                bar.update(step, T=lambda: f"{temperature():.1f} K")

    In a terminal (stdout a TTY, ``stream`` not given) a ``rich`` bar with rate, ETA and the
    fields; otherwise one line ``[label] step 40/500 (8%) | 1.32 steps/s | ETA 5m48s | T 301.2 K
    | elapsed 30s`` at the first update past ``start``, then whenever ``interval_s`` seconds
    (default ``$OPENJMP_PROGRESS_INTERVAL``, 30) have passed since the last line, at the last
    unit, and on :meth:`close` if the last update was not printed (an optimiser that converged
    before its step limit). Nothing with ``--quiet`` or ``enabled=False``.

    Field values may be zero-argument callables: they are called only when a line or the bar is
    drawn, so an update per MD step stays cheap. ``start`` units were done before (a resumed
    run): the rate and ETA count only the units done now. ``clock`` is for tests.
    """

    def __init__(self, label: str, total: int | None = None, unit: str = "step", *, start: int = 0,
                 interval_s: float | None = None, stream: TextIO | None = None, enabled: bool = True,
                 live: bool | None = None, eta_bound: bool = False,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.label = label
        self.total = int(total) if total else None
        self.unit = unit
        self.start = self.n = int(start)
        self.interval_s = interval() if interval_s is None else float(interval_s)
        self.stream = stream
        self.eta_bound = eta_bound
        self.clock = clock
        self.enabled = bool(enabled) and verbosity() >= 0
        if live is None:
            live = stream is None and stdout_is_terminal()
        self.live = self.enabled and live
        self.fields: dict[str, Any] = {}
        self.t0 = self.t_update = clock()
        self.last_line: float | None = None
        self.printed_n: int | None = None
        self.lines = 0
        self._bar = None
        self._task = None
        self._last_draw = -math.inf
        self._closed = False
        if self.live:
            self._start_bar()

    # -- the live bar ---------------------------------------------------------------------------
    def _start_bar(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        columns = [TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[extra]}")]
        # no refresh thread: the bar is redrawn from update(), at most every LIVE_REFRESH_S
        self._bar = RichProgress(*columns, auto_refresh=False, transient=False)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total, completed=self.start,
                                        rate="", extra="")

    def _draw(self, force: bool = False) -> None:
        now = self.t_update
        if not force and now - self._last_draw < LIVE_REFRESH_S:
            return
        self._last_draw = now
        elapsed = now - self.t0
        done = self.n - self.start
        rate = done / elapsed if elapsed > 0 and done > 0 else float("nan")
        extra = " | ".join(f"{k} {format_value(v)}" for k, v in self.fields.items())
        self._bar.update(self._task, completed=self.n, rate=format_rate(rate, self.unit), extra=extra)
        self._bar.refresh()

    # -- log lines ------------------------------------------------------------------------------
    def line(self) -> str:
        """The progress line as of the last update (without the ``[label]`` prefix)."""
        return progress_line(self.n, self.total, self.t_update - self.t0, label=self.unit,
                             first_step=self.start, fields=self.fields, eta_bound=self.eta_bound)

    def _print_line(self) -> None:
        print(f"[{self.label}] {self.line()}", file=self.stream or sys.stdout, flush=True)
        self.last_line = self.t_update
        self.printed_n = self.n
        self.lines += 1

    def message(self, text: str) -> None:
        """A ``[label] text`` line in a log, printed above the bar in a terminal (not with --quiet)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(f"[{self.label}] {text}", markup=False, highlight=False)
        else:
            print(f"[{self.label}] {text}", file=self.stream or sys.stdout, flush=True)

    # -- updates --------------------------------------------------------------------------------
    def update(self, n: int, fields: Mapping[str, Any] | None = None, **more: Any) -> None:
        """``n`` units are done (absolute); ``fields`` / keywords: extra ``name value`` parts."""
        if not self.enabled:
            return
        self.n = int(n)
        self.t_update = self.clock()
        if fields:
            self.fields.update(fields)
        if more:
            self.fields.update(more)
        last = self.total is not None and self.n >= self.total
        if self._bar is not None:
            self._draw(force=last)
            return
        if self.n <= self.start or self.n == self.printed_n:
            return
        due = (self.last_line is None or last
               or self.t_update - self.last_line >= self.interval_s)
        if due:
            self._print_line()

    def advance(self, k: int = 1, fields: Mapping[str, Any] | None = None, **more: Any) -> None:
        """``k`` more units are done."""
        self.update(self.n + k, fields, **more)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self._bar is not None:
            self._draw(force=True)
            self._bar.stop()
            self._bar = None
        elif self.n > self.start and self.n != self.printed_n:
            self._print_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
