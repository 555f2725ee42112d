"""``openjmp study``: the miniature JMP study — pre-trained vs scratch on every mini fine-tuning task.

Default (what ``make demo`` runs): the shipped ``openjmp-mini`` backbone, the shipped mini suite,
the task list of ``configs/study/mini.yaml``; writes ``report.md``, ``results.json`` and figures.
Ctrl-C leaves a usable partial report; running the same command again resumes.

Ablations (re-run pre-training, so they need --pretrain): --temperature, --atom-wise-loss,
--no-ema, --no-edge-dropout, --single-domain NAME.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, metavar="NAME|PATH",
                   help="study config: a shipped name (study/mini; openjmp configs list study) or a YAML file "
                        "(default: study/mini)")
    p.add_argument("--out", type=Path, default=Path("study"), help="output folder")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="total fine-tuning budget; sets the per-run wall-time cap (same for both arms)")
    p.add_argument("--seeds", type=int, default=None, help="repeat every arm with K seeds (mean ± std)")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps per run (both arms)")
    p.add_argument("--tasks", nargs="+", default=None, help="only these tasks")
    p.add_argument("--workers", type=int, default=2, help="fine-tuning runs in parallel (one thread each)")
    p.add_argument("--pretrained", default=None, help="model file or registry name of the backbone")
    p.add_argument("--pretrain", action="store_true", help="re-run pre-training first instead of the shipped weights")
    p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override of the pre-training config (with --pretrain)")
    p.add_argument("--temperature", type=float, default=None, help="ablation: sampling temperature (with --pretrain)")
    p.add_argument("--atom-wise-loss", action="store_true", help="ablation: atom-wise force loss (with --pretrain)")
    p.add_argument("--no-ema", action="store_true", help="ablation: no EMA (with --pretrain)")
    p.add_argument("--no-edge-dropout", action="store_true", help="ablation: no edge dropout (with --pretrain)")
    p.add_argument("--single-domain", default=None, help="ablation: pre-train on this dataset only (with --pretrain)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of the study config")
    p.set_defaults(func=run)


def default_study_config() -> Path:
    from importlib import resources

    return Path(str(resources.files("openjmp") / "configs" / "study" / "mini.yaml"))


def resolve_pretrained(name_or_path: str, base: Path) -> Path:
    path = Path(name_or_path)
    if not path.is_absolute():
        candidate = base / path
        if candidate.exists():
            return candidate
    if path.exists():
        return path
    from openjmp.models.registry import resolve_model

    return resolve_model(name_or_path)


def pretrain_overrides(args) -> list[str]:
    overrides = list(args.pretrain_set)
    if args.temperature is not None:
        overrides.append(f"sampler.temperature={args.temperature}")
    if args.atom_wise_loss:
        overrides.append("loss.reduction=atom")
    if args.no_ema:
        overrides.append("ema.enabled=false")
    if args.no_edge_dropout:
        overrides.append("model.edge_dropout=0.0")
    return overrides


def run(args) -> int:
    from rich.console import Console

    from openjmp.configuration import load_config
    from openjmp.study.config import StudyConfig
    from openjmp.study.runner import ARMS, run_study

    console = Console()
    from openjmp.configuration import resolve_config

    config_path = resolve_config(args.config, kind="study") if args.config else default_study_config()
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    if args.pretrained is not None:
        overrides.append(f"pretrained={args.pretrained}")
    study = load_config(StudyConfig, config_path, overrides)
    if args.seeds is not None:
        study.seeds = list(range(args.seeds))
    tasks = [t for t in study.tasks if args.tasks is None or t.name in args.tasks]
    if args.tasks and len(tasks) != len(args.tasks):
        known = [t.name for t in study.tasks]
        raise SystemExit(f"unknown task(s) {sorted(set(args.tasks) - set(known))}; known: {known}")
    total_runs = len(tasks) * len(ARMS) * len(study.seeds) * len(study.lr_grid)
    if args.budget_minutes is not None:
        study.run_time_cap_minutes = max(0.1, args.budget_minutes * max(args.workers, 1) / total_runs)
    ablation = bool(pretrain_overrides(args)) or args.single_domain
    if ablation and not args.pretrain:
        raise SystemExit("ablation flags change pre-training: add --pretrain")
    args.out.mkdir(parents=True, exist_ok=True)
    phases = {}
    if args.pretrain:
        from openjmp.training.config import PretrainConfig
        from openjmp.training.pretrain import run_pretraining

        pcfg_path = Path(study.pretrain_config)
        if not pcfg_path.is_absolute():
            local = Path.cwd() / pcfg_path
            pcfg_path = local if local.exists() else Path(str(default_study_config().parents[1] / "pretrain" / pcfg_path.name))
        pcfg = load_config(PretrainConfig, pcfg_path, pretrain_overrides(args) + [f"output_dir={args.out / 'pretrain'}"])
        if args.single_domain:
            keep = [d for d in pcfg.datasets if d.name == args.single_domain]
            if not keep:
                raise SystemExit(f"--single-domain {args.single_domain!r}: not a dataset of {pcfg_path}")
            pcfg.datasets = keep
        console.rule("[bold]phase 1: pre-training")
        t0 = time.perf_counter()
        run_pretraining(pcfg)
        phases["pretraining_s"] = time.perf_counter() - t0
        pretrained = args.out / "pretrain" / "model.pt"
    else:
        pretrained = resolve_pretrained(study.pretrained, config_path.parent)
    console.rule("[bold]fine-tuning: scratch vs JMP")
    console.print(f"{len(tasks)} tasks x {len(ARMS)} arms x {len(study.seeds)} seeds x {len(study.lr_grid)} learning rates "
                  f"= {total_runs} runs of {study.steps} steps (cap {study.run_time_cap_minutes:.2f} min each, "
                  f"{args.workers} in parallel)")

    def progress(label, done, total, elapsed):
        eta = elapsed / done * (total - done) if done else float("nan")
        eta_text = f"{eta / 60:.1f} min" if eta == eta else "?"
        # markup=False: "[task 1/2]" is text, not a rich style tag
        console.print(f"[task {done + 1}/{total}] {label}  (elapsed {elapsed / 60:.1f} min, ETA {eta_text})",
                      markup=False, highlight=False)

    try:
        results = run_study(study, args.out, pretrained, progress, only_tasks={t.name for t in tasks},
                            workers=args.workers, run_progress=True)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted: partial report in {args.out}/report.md; run the same command to resume")
        return 130
    if phases:
        from openjmp.study.runner import write_results

        results["phases"].update(phases)
        write_results(args.out, results)
    console.rule("[bold]results")
    for name, t in results["tasks"].items():
        console.print(f"{name:>18}: scratch {t['arms']['scratch']['test_mean']:.4g}  JMP {t['arms']['jmp']['test_mean']:.4g} "
                      f"{t['unit']}  improvement {100 * t['improvement']:.1f}%")
    console.print(f"[bold]mean improvement {100 * results['mean_improvement']:.1f}%[/bold]; report: {args.out / 'report.md'}")
    return 0
