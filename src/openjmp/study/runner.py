"""Run the miniature JMP study: every task x {scratch, jmp} x seeds x learning-rate grid.

Each fine-tuning run lives in ``OUT/runs/<task>/<arm>/seed<k>/lr<lr>/`` and is skipped when its
``summary.json`` exists, so an interrupted study (Ctrl-C) resumes where it stopped; the report
is rewritten after every finished task, so a partial report is always usable.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import numpy as np

from openjmp.study.config import StudyConfig, StudyTask

ARMS = ("scratch", "jmp")


def _lr_tag(lr: float) -> str:
    return f"lr{lr:.0e}".replace("+", "")


def finetune_config_dict(study: StudyConfig, task: StudyTask, arm: str, seed: int, lr: float,
                         pretrained: Path, out: Path, pretrain_heads: set[str] | None = None) -> dict:
    """The FinetuneConfig of one run: the task's settings + the study's fairness rules.

    ``pretrain_heads``: the pre-training heads of ``pretrained`` when known; a target's
    ``init_head`` the model lacks (a single-domain ablation) is dropped like in the scratch arm."""
    cfg = copy.deepcopy(task.finetune)
    cfg["seed"] = seed
    cfg["output_dir"] = str(out)
    cfg["init"] = {"kind": "pretrained" if arm == "jmp" else "scratch", "checkpoint": str(pretrained)}
    for target in cfg.get("targets", []):
        head = target.get("init_head")
        if head and (arm == "scratch" or (pretrain_heads is not None and head not in pretrain_heads)):
            # no pre-trained head to start from: a fresh head, element references from the labels
            target.pop("init_head")
            if target.get("reference") == "estimated":
                target["reference"] = "average"
    optim = cfg.setdefault("optim", {})
    optim["lr"] = lr
    trainer = cfg.setdefault("trainer", {})
    # the study fixes the budget in steps for both arms; epoch-based trainer fields would conflict
    trainer.pop("max_epochs", None)
    trainer.pop("val_every_n_epochs", None)
    trainer["max_steps"] = study.steps
    trainer["val_every_n_steps"] = study.val_every_n_steps
    trainer["max_time_minutes"] = study.run_time_cap_minutes
    trainer["progress_bar"] = False
    trainer.setdefault("early_stopping_patience", None)
    return cfg


def primary_value(summary: dict, task: StudyTask) -> float:
    metrics = (summary.get("test") or {}).get("metrics", {})
    m = metrics.get(task.primary_metric)
    if m is None:
        raise KeyError(f"task {task.name}: test metrics lack {task.primary_metric!r} (have {sorted(metrics)})")
    return float(m[task.primary_field]) * task.report_scale


def val_curve(summary: dict, task: StudyTask) -> list[tuple[int, float]]:
    """(step, validation primary metric in report units) along the run."""
    out = []
    for record in summary.get("validation", []):
        m = record["metrics"].get(task.primary_metric)
        if m is not None:
            out.append((int(record["step"]), float(m[task.primary_field]) * task.report_scale))
    return out


def pretrain_head_names(pretrained: Path) -> set[str] | None:
    """Names of the pre-training heads of a model file (None when it cannot be read here)."""
    from openjmp.checkpoints.format import load_model_file

    try:
        return set(load_model_file(pretrained).model_config.get("pretrain_tasks") or [])
    except Exception:  # the fine-tuning runs report an unreadable file themselves
        return None


def _run_one(cfg_dict: dict, log_label: str | None = None) -> str:
    """One fine-tuning run (top-level so that worker processes can pickle it). ``log_label``:
    print the run's own progress lines (a log, not a terminal) so that a study is never silent
    for longer than the progress interval, however long one run takes."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from openjmp.configuration import load_config
    from openjmp.training.finetune import run_finetuning
    from openjmp.training.finetune_config import FinetuneConfig

    callbacks = None
    if log_label is not None:
        from openjmp.training.progress import ProgressLog

        callbacks = [ProgressLog(log_label)]
    run_finetuning(load_config(FinetuneConfig, data=cfg_dict), callbacks=callbacks)
    return cfg_dict["output_dir"]


def _plan(study: StudyConfig, task: StudyTask, out: Path) -> list[tuple[str, int, float, Path]]:
    return [(arm, seed, lr, out / "runs" / task.name / arm / f"seed{seed}" / _lr_tag(lr))
            for arm in ARMS for seed in study.seeds for lr in study.lr_grid]


def run_study(study: StudyConfig, out: Path, pretrained: Path, progress=None, only_tasks=None,
              workers: int = 1, run_progress: bool = False) -> dict:
    """Run (or resume) all runs; returns the results dict (also written as results.json).

    ``workers`` > 1 runs independent fine-tuning runs in parallel processes (one thread each);
    results do not depend on it. ``run_progress``: report fine-tuning runs done of all runs with
    rate and ETA (:class:`openjmp.progress.Progress`: a bar in a terminal, else a line after a
    finished run at least every ``$OPENJMP_PROGRESS_INTERVAL`` seconds).
    """
    from openjmp.progress import Progress

    out = Path(out)
    results: dict = {"tasks": {}, "config": study.model_dump(mode="json"), "pretrained": str(pretrained),
                     "phases": {}}
    tasks = [t for t in study.tasks if only_tasks is None or t.name in only_tasks]
    heads = pretrain_head_names(pretrained)
    plans = {task.name: _plan(study, task, out) for task in tasks}
    done_before = sum((p[3] / "summary.json").exists() for plan in plans.values() for p in plan)
    with Progress("study", total=sum(len(plan) for plan in plans.values()), unit="run",
                  start=done_before, enabled=run_progress) as bar:
        _run_tasks(study, out, pretrained, progress, tasks, plans, heads, workers, results, bar)
    return results


def _run_tasks(study, out, pretrained, progress, tasks, plans, heads, workers, results, bar) -> None:
    from openjmp.progress import stdout_is_terminal, verbosity

    log_runs = bar.enabled and not stdout_is_terminal() and verbosity() >= 0
    t_start = time.perf_counter()
    for task in tasks:
        t_task = time.perf_counter()
        plan = plans[task.name]
        pending = [p for p in plan if not (p[3] / "summary.json").exists()]
        if progress:
            progress(f"{task.name}: {len(pending)} of {len(plan)} runs to do", len(results["tasks"]), len(tasks),
                     time.perf_counter() - t_start)
        configs = [finetune_config_dict(study, task, arm, seed, lr, pretrained, run_dir, heads)
                   for arm, seed, lr, run_dir in pending]
        labels = [f"{task.name}/{arm}/seed{seed}/{_lr_tag(lr)}" if log_runs else None
                  for arm, seed, lr, _ in pending]
        if workers > 1 and len(configs) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
                for future in as_completed([pool.submit(_run_one, cfg, label) for cfg, label in zip(configs, labels)]):
                    future.result()
                    bar.advance(task=task.name)
        else:
            for cfg, label in zip(configs, labels):
                _run_one(cfg, label)
                bar.advance(task=task.name)
        jmp_cfg = finetune_config_dict(study, task, "jmp", 0, study.lr_grid[0], pretrained, out, heads)
        task_result = {"domain": task.domain, "in_pretraining_domain": task.in_pretraining_domain,
                       "primary_metric": task.primary_metric, "unit": task.report_unit,
                       "jmp_heads_from_pretraining": {t["name"]: t["init_head"] for t in jmp_cfg["targets"]
                                                      if t.get("init_head")},
                       "arms": {}}
        for arm in ARMS:
            per_seed = []
            for seed in study.seeds:
                candidates = []
                for lr in study.lr_grid:
                    run_dir = out / "runs" / task.name / arm / f"seed{seed}" / _lr_tag(lr)
                    summary = json.loads((run_dir / "summary.json").read_text())
                    candidates.append((summary["best_val_loss"], lr, run_dir, summary))
                # the learning rate is chosen on the validation loss only
                best_val, lr, run_dir, summary = min(candidates, key=lambda c: c[0])
                per_seed.append({
                    "seed": seed, "lr": lr, "run": str(run_dir.relative_to(out)), "best_val_loss": best_val,
                    "test": primary_value(summary, task), "val_curve": val_curve(summary, task),
                    "steps": summary["steps"], "train_time_s": summary["train_time_s"],
                    "test_metrics_file": str((run_dir / "test" / "metrics.json").relative_to(out)),
                    "lr_candidates": {f"{c[1]:g}": c[0] for c in candidates},
                })
            tests = np.array([s["test"] for s in per_seed])
            task_result["arms"][arm] = {"runs": per_seed, "test_mean": float(tests.mean()),
                                        "test_std": float(tests.std(ddof=1)) if tests.size > 1 else 0.0}
        s, j = task_result["arms"]["scratch"], task_result["arms"]["jmp"]
        task_result["improvement"] = 1.0 - j["test_mean"] / s["test_mean"] if s["test_mean"] > 0 else math.nan
        task_result["speedup"] = steps_to_reach(s, j)
        task_result["wall_time_s"] = time.perf_counter() - t_task
        results["tasks"][task.name] = task_result
        results["phases"]["finetuning_s"] = time.perf_counter() - t_start
        finalize(results)
        write_results(out, results)


def steps_to_reach(scratch: dict, jmp: dict) -> dict:
    """Fine-tuning speed-up: steps the JMP arm needs to reach the scratch arm's final validation
    error (first seed), compared with the scratch arm's steps (the paper's 'time to accuracy')."""
    s_curve, j_curve = scratch["runs"][0]["val_curve"], jmp["runs"][0]["val_curve"]
    if not s_curve or not j_curve:
        return {"jmp_steps": None, "scratch_steps": None, "ratio": None}
    target = min(v for _, v in s_curve)
    scratch_steps = next(step for step, v in s_curve if v <= target)
    jmp_steps = next((step for step, v in j_curve if v <= target), None)
    ratio = scratch_steps / jmp_steps if jmp_steps else None
    return {"target": target, "jmp_steps": jmp_steps, "scratch_steps": scratch_steps, "ratio": ratio}


def finalize(results: dict) -> None:
    imps = [t["improvement"] for t in results["tasks"].values() if math.isfinite(t["improvement"])]
    results["mean_improvement"] = float(np.mean(imps)) if imps else math.nan
    results["num_tasks"] = len(results["tasks"])
    results["domains"] = sorted({t["domain"] for t in results["tasks"].values()})


def write_results(out: Path, results: dict) -> None:
    from openjmp.study.report import write_report
    from openjmp.training.pretrain import write_json

    write_json(out / "results.json", results)
    write_report(out, results)
