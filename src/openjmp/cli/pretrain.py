"""``openjmp pretrain --config NAME|FILE``: joint multi-domain pre-training (the JMP recipe).

--config takes a shipped config name (pretrain/mini, pretrain/jmp_s; openjmp configs list
pretrain) or a YAML file path.

Examples:
  openjmp pretrain --config pretrain/mini
  openjmp pretrain --config my.yaml --set optim.lr=1e-4 --set trainer.max_steps=5000
  openjmp pretrain --config my.yaml --devices 4 --strategy ddp      # one node, 4 GPUs
A run resumes from ``OUTPUT_DIR/checkpoints/last.ckpt`` when it exists (``--no-resume`` to
start over).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="NAME|PATH",
                   help="pre-training config: shipped name (pretrain/mini) or YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. optim.lr=1e-4 (repeatable)")
    p.add_argument("--output-dir", type=Path, help="override output_dir")
    p.add_argument("--devices", help="trainer.devices (e.g. 2, or auto)")
    p.add_argument("--num-nodes", type=int, help="trainer.num_nodes")
    p.add_argument("--strategy", help="trainer.strategy (auto, ddp, ddp_spawn, ...)")
    p.add_argument("--accelerator", help="trainer.accelerator (cpu, gpu, auto)")
    p.add_argument("--precision", help="trainer.precision (32-true, bf16-mixed, 16-mixed)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last checkpoint")
    p.set_defaults(func=run)


def run(args) -> int:
    from openjmp.configuration import load_config
    from openjmp.training.config import PretrainConfig
    from openjmp.training.pretrain import run_pretraining

    overrides = list(args.overrides)
    for flag, key in (("devices", "trainer.devices"), ("num_nodes", "trainer.num_nodes"),
                      ("strategy", "trainer.strategy"), ("accelerator", "trainer.accelerator"),
                      ("precision", "trainer.precision"), ("output_dir", "output_dir")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    from openjmp.configuration import resolve_config

    config = load_config(PretrainConfig, resolve_config(args.config, kind="pretrain"), overrides)
    summary = run_pretraining(config, resume=not args.no_resume)
    if not summary.get("is_global_zero", True):
        return 0  # other DDP processes stay quiet
    last = summary["validation"][-1] if summary["validation"] else None
    if last:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"validation after {summary['steps']} steps (EMA weights)")
        for col in ("dataset", "energy MAE [meV/atom]", "energy MAE [eV]", "force MAE [eV/Å]"):
            table.add_column(col)
        for name, m in last["datasets"].items():
            table.add_row(name, f"{m['energy_mae_meV_per_atom']:.2f}", f"{m['energy_mae_eV']:.4f}",
                          f"{m['force_mae_eV_per_A']:.4f}")
        Console().print(table)
    print(f"outputs in {config.output_dir} (summary.json, learning_curves.png, model.pt, checkpoints/)")
    return 0
