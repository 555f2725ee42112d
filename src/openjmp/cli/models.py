"""``openjmp models list|inspect|convert``: presets, checkpoint summaries, JMP -> openjmp files.

* ``list``: registered presets, their published weights and whether the file is on this machine
  (openjmp never downloads; see ``openjmp.models.registry``);
* ``inspect FILE``: summary of a published JMP checkpoint or an openjmp model file (read without
  executing anything from the file);
* ``convert JMP_CKPT OUT``: write an openjmp model file with the EMA weights (default).
"""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__)
    sub = p.add_subparsers(dest="models_command", metavar="COMMAND")

    p_list = sub.add_parser("list", help="registered presets and local weight files")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_list.set_defaults(func=run_list)

    p_inspect = sub.add_parser("inspect", help="summarise a JMP checkpoint or openjmp model file")
    p_inspect.add_argument("file", type=Path)
    p_inspect.add_argument("--raw", action="store_true", help="do not substitute EMA weights")
    p_inspect.add_argument("--preset", default=None,
                           help="registry name of the layout (default: detect jmp-s / jmp-l)")
    p_inspect.add_argument("--json", action="store_true", help="print JSON")
    p_inspect.set_defaults(func=run_inspect)

    p_convert = sub.add_parser("convert", help="JMP checkpoint -> openjmp model file")
    p_convert.add_argument("source", type=Path, help="published jmp-s.pt / jmp-l.pt (or same layout)")
    p_convert.add_argument("destination", type=Path, help="openjmp model file to write")
    p_convert.add_argument("--raw", action="store_true", help="raw training weights instead of EMA")
    p_convert.add_argument("--alias-values", choices=("jmp", "ema"), default="jmp",
                           help="out-block MLP values as JMP fine-tuning ends up with (jmp) or EMA")
    p_convert.add_argument("--preset", default=None, help="registry name of the layout")
    p_convert.set_defaults(func=run_convert)


def run_list(args) -> int:
    from openjmp.models import registry

    rows = []
    for name in registry.list_models():
        entry = registry.get_model_entry(name)
        row = {"name": name, "description": entry.description, "weights": None,
               "local_file": None, "license": None, "url": None}
        if entry.pretrained is not None:
            row.update(weights=entry.pretrained.file_name, license=entry.pretrained.license,
                       url=entry.pretrained.url)
            found = [d / entry.pretrained.file_name for d in registry.cache_dirs()
                     if (d / entry.pretrained.file_name).is_file()]
            row["local_file"] = str(found[0]) if found else None
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="openjmp models")
    for col in ("name", "description", "weights", "on this machine"):
        table.add_column(col)
    for row in rows:
        local = row["local_file"] or ("-" if row["weights"] is None else "not found")
        table.add_row(row["name"], row["description"], row["weights"] or "-", local)
    console = Console()
    console.print(table)
    console.print("weights are never downloaded; search path: "
                  + ", ".join(str(d) for d in registry.cache_dirs())
                  + f" (set ${registry.ENV_CACHE})")
    return 0


def _summary(path: Path, raw: bool, preset: str | None) -> dict:
    from openjmp.models import registry

    if registry.is_openjmp_model_file(path):
        from openjmp.checkpoints.format import load_model_file

        mf = load_model_file(path)
        return {
            "file": str(path), "kind": "openjmp model file", "format_version": mf.format_version,
            "preset": mf.model_config.get("preset"), "tensors": len(mf.state_dict),
            "parameters": int(sum(t.numel() for t in mf.state_dict.values())),
            "has_ema": mf.ema_state_dict is not None, "heads": mf.heads,
            "normalization_targets": sorted(mf.normalization), "extra": mf.extra,
        }
    from openjmp.checkpoints.jmp import PUBLISHED_VARIANTS, load_jmp_checkpoint

    if preset is None or preset in PUBLISHED_VARIANTS:
        ckpt = load_jmp_checkpoint(path, use_ema=not raw)
    else:
        spec, config = registry.pretraining_key_spec(preset)
        ckpt = load_jmp_checkpoint(path, use_ema=not raw, key_spec=spec, backbone_config=config)
    return {
        "file": str(path), "kind": "JMP Lightning checkpoint", "variant": ckpt.variant,
        "tensors": len(ckpt.state_dict),
        "parameters": int(sum(t.numel() for t in ckpt.state_dict.values())),
        "used_ema": ckpt.used_ema, "ema_decay": ckpt.ema_decay, "tasks": list(ckpt.task_names),
        "epoch": ckpt.epoch, "global_step": ckpt.global_step,
        "lightning_version": ckpt.lightning_version,
        "config_differences_vs_preset": {k: list(v) for k, v in ckpt.config_differences.items()},
        "placeholder_classes": ckpt.placeholders,
    }


def run_inspect(args) -> int:
    summary = _summary(args.file, args.raw, args.preset)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    return 0


def run_convert(args) -> int:
    from openjmp.checkpoints.convert import convert_jmp_checkpoint

    digest = convert_jmp_checkpoint(args.source, args.destination, preset=args.preset,
                                    use_ema=not args.raw, alias_values=args.alias_values)
    print(f"wrote {args.destination} (sha256 {digest})")
    return 0
