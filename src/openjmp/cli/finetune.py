"""``openjmp finetune --config NAME|FILE``: new heads on a pre-trained (or JMP, or random) backbone.

--config takes a shipped config name (openjmp configs list finetune) or a YAML file path.
init.checkpoint takes a registered model name (openjmp-mini, jmp-s, jmp-l; openjmp models list)
or a model file path.

Examples:
  openjmp finetune --config finetune/mini/rmd17_ethanol
  openjmp finetune --config finetune/mini/rmd17_ethanol --output-dir ethanol --set trainer.max_steps=100
  openjmp finetune --config my.yaml --set init.kind=scratch --set optim.lr=5e-4
  openjmp configs copy finetune/mini/rmd17_ethanol my.yaml     # a copy to edit
Outputs in output_dir: model.pt (best EMA weights), summary.json, test/metrics.json and plots;
then e.g. openjmp evaluate --model ethanol/model.pt --data FILE.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="NAME|PATH",
                   help="fine-tuning config: shipped name (finetune/mini/rmd17_ethanol) or YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. optim.lr=1e-4 (repeatable)")
    p.add_argument("--output-dir", type=Path, help="override output_dir (default: the config's output_dir)")
    p.set_defaults(func=run)


def run(args) -> int:
    from openjmp.configuration import load_config
    from openjmp.training.finetune import run_finetuning
    from openjmp.training.finetune_config import FinetuneConfig

    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    from openjmp.configuration import resolve_config

    config = load_config(FinetuneConfig, resolve_config(args.config, kind="finetune"), overrides)
    summary = run_finetuning(config)
    test = summary.get("test") or {}
    print(json.dumps({"init": summary["init"], "steps": summary["steps"], "best_step": summary["best_step"],
                      "test_metrics": test.get("metrics")}, indent=2))
    print(f"outputs in {config.output_dir}")
    return 0
