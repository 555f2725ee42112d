"""The study report: ``report.md``, learning curves, improvement bar chart (PNG).

Every number in the results table comes from a run's ``test/metrics.json`` (the file is named in
the table's last column), scaled to the reported unit.
"""

from __future__ import annotations

import math
from pathlib import Path

FAIRNESS = """\
Fairness rules (fixed before any result was looked at):
- both arms (scratch = random initialisation of the same architecture, JMP = the pre-trained
  backbone) train on the same records, for the same number of optimisation steps, under the
  same wall-time cap, with the same batch size, schedule, loss and head architecture;
- heads: where a task sets `init_head` (its labels share the level of theory of a pre-training
  dataset), the JMP arm starts its head from that pre-training head with the "estimated"
  element references; the scratch arm, having no pre-trained head, gets a fresh head and
  "average" references (least squares on the training labels); every other head is fresh;
- each arm picks its own learning rate from the same grid, on the validation loss only;
- training-set sizes are fixed per task; the test split is never used for any choice;
- the EMA weights of the best validation step are evaluated on the test split."""


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}"


def _plot(out: Path, results: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    tasks = results["tasks"]
    if not tasks:
        return written
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, (name, t) in zip(axes[0], tasks.items()):
        for arm, style in (("scratch", "--"), ("jmp", "-")):
            curve = t["arms"][arm]["runs"][0]["val_curve"]
            if curve:
                ax.plot([c[0] for c in curve], [c[1] for c in curve], style, marker="o", ms=3, label=arm)
        ax.set(title=name, xlabel="fine-tuning step", ylabel=f"val {t['primary_metric']} [{t['unit']}]", yscale="log")
        ax.legend()
    fig.tight_layout()
    path = out / "learning_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)
    fig, ax = plt.subplots(figsize=(1.2 * len(tasks) + 2, 3.6))
    names = list(tasks)
    imps = [100 * tasks[n]["improvement"] for n in names]
    ax.bar(names, imps, color=["tab:green" if v > 0 else "tab:red" for v in imps])
    ax.axhline(0, color="k", lw=0.8)
    if math.isfinite(results.get("mean_improvement", math.nan)):
        ax.axhline(100 * results["mean_improvement"], color="tab:blue", ls="--", label="mean")
        ax.legend()
    ax.set(ylabel="improvement over scratch [%]", title="1 − MAE_JMP / MAE_scratch (test)")
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    path = out / "improvements.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)
    return written


def write_report(out: Path, results: dict) -> Path:
    out = Path(out)
    plots = _plot(out, results)
    cfg = results["config"]
    lines = [
        "# openjmp miniature JMP study",
        "",
        f"Pre-trained backbone: `{results['pretrained']}`. Fine-tuning: {cfg['steps']} steps per run, "
        f"learning-rate grid {cfg['lr_grid']}, seeds {cfg['seeds']}, wall-time cap "
        f"{cfg['run_time_cap_minutes']} min per run.",
        "",
        FAIRNESS,
        "",
        "## Results (test split, primary metric)",
        "",
        "| task | domain | in pre-training domain | metric | scratch | JMP | improvement | steps to scratch's best (JMP / scratch) | metrics files |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in results["tasks"].items():
        s, j = t["arms"]["scratch"], t["arms"]["jmp"]
        pm = f"{t['primary_metric']} MAE [{t['unit']}]"
        sv = _fmt(s["test_mean"]) + (f" ± {_fmt(s['test_std'])}" if len(s["runs"]) > 1 else "")
        jv = _fmt(j["test_mean"]) + (f" ± {_fmt(j['test_std'])}" if len(j["runs"]) > 1 else "")
        sp = t.get("speedup") or {}
        speed = f"{sp.get('jmp_steps')} / {sp.get('scratch_steps')}" if sp.get("jmp_steps") else f"not reached / {sp.get('scratch_steps')}"
        files = "<br>".join(f"`{r['test_metrics_file']}`" for arm in ("scratch", "jmp") for r in t["arms"][arm]["runs"])
        lines.append(
            f"| {name} | {t['domain']} | {'yes' if t['in_pretraining_domain'] else 'no'} | {pm} | {sv} | {jv} | "
            f"{100 * t['improvement']:.1f}% | {speed} | {files} |"
        )
    mean = results.get("mean_improvement", math.nan)
    lines += [
        "",
        f"**Mean improvement over scratch: {100 * mean:.1f}%** across {results.get('num_tasks', 0)} tasks "
        f"({', '.join(results.get('domains', []))}).",
        "",
    ]
    reused = {name: t.get("jmp_heads_from_pretraining") for name, t in results["tasks"].items()
              if t.get("jmp_heads_from_pretraining")}
    if reused:
        lines += ["JMP-arm heads started from pre-training heads (`init_head`; scratch: fresh heads):", ""]
        lines += [f"- {name}: " + ", ".join(f"{target} ← {head}" for target, head in m.items())
                  for name, m in reused.items()]
        lines += [""]
    lines += [
        "Chosen learning rates (validation loss per candidate):",
        "",
    ]
    for name, t in results["tasks"].items():
        for arm in ("scratch", "jmp"):
            for r in t["arms"][arm]["runs"]:
                lines.append(f"- {name} / {arm} / seed {r['seed']}: lr {r['lr']:g} (candidates {r['lr_candidates']})")
    lines += ["", "## Wall time", ""]
    for name, t in results["tasks"].items():
        lines.append(f"- {name}: {t['wall_time_s'] / 60:.1f} min")
    for phase, seconds in results.get("phases", {}).items():
        lines.append(f"- phase {phase}: {seconds / 60:.1f} min")
    lines += ["", "## Figures", ""]
    lines += [f"![{p}]({p})" for p in plots]
    lines += ["", "Parity plots of each run: `runs/<task>/<arm>/seed<k>/<lr>/test/parity_*.png`.", ""]
    path = out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path
