"""``openjmp models list|inspect|convert|export``: presets, checkpoint summaries, JMP -> openjmp files.

* ``list``: registered models, their weights and whether they are shipped (inside the package),
  present (in $OPENJMP_CACHE or ~/.cache/openjmp) or missing (openjmp never downloads; see
  ``openjmp.models.registry``);
* ``inspect NAME|FILE``: summary of a registered model (``openjmp-mini``, ``jmp-s``), a published
  JMP checkpoint or an openjmp model file (read without executing anything from the file);
* ``convert JMP_CKPT OUT``: write an openjmp model file with the EMA weights (default);
* ``export NAME|FILE --format torchscript --out FILE``: a portable TorchScript file of the
  energy head (energy, -dE/dx forces; loads with torch only; see docs/simulations.md).
"""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__)
    sub = p.add_subparsers(dest="models_command", metavar="COMMAND")

    p_list = sub.add_parser("list", help="registered models and whether their weights are here")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_list.set_defaults(func=run_list)

    p_inspect = sub.add_parser("inspect", help="summarise a registered model, a JMP checkpoint or an openjmp model file")
    p_inspect.add_argument("file", metavar="NAME|FILE", help="registered name (openjmp-mini, jmp-s, jmp-l) or file path")
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

    p_export = sub.add_parser("export", help="portable TorchScript file (torch only) of an energy head")
    p_export.add_argument("model", metavar="NAME|FILE", help="registered name or openjmp model file")
    p_export.add_argument("--format", choices=("torchscript", "aoti"), default="torchscript",
                          help="torchscript (works with torch 2.13); aoti is refused with the reason")
    p_export.add_argument("--out", type=Path, required=True, help="file to write")
    p_export.add_argument("--head", default=None, help="energy head (default: as the calculator)")
    p_export.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p_export.add_argument("--raw", action="store_true", help="raw training weights instead of EMA")
    p_export.set_defaults(func=run_export)


def run_list(args) -> int:
    from openjmp.models import registry

    rows = []
    for name in registry.list_models():
        entry = registry.get_model_entry(name)
        row = {"name": name, "description": entry.description, "weights": None, "status": "no weights",
               "local_file": None, "license": None, "url": None, "sha256": None, "size_bytes": None,
               "citation": None}
        if entry.pretrained is not None:
            cfg = entry.pretrained
            status, path = registry.weight_status(name)
            row.update(weights=cfg.file_name, license=cfg.license, url=cfg.url, sha256=cfg.sha256,
                       size_bytes=cfg.size_bytes, citation=cfg.citation, status=status,
                       local_file=str(path) if path is not None else None)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="openjmp models")
    for col in ("name", "weights", "status", "where / how to get", "licence"):
        table.add_column(col, overflow="fold")
    for row in rows:
        if row["weights"] is None:
            where = "architecture only (fine-tune from scratch)"
        elif row["local_file"]:
            where = row["local_file"]
        else:
            where = f"download {row['url']}" if row["url"] else "-"
        lic = (row["license"] or "-").split(" (")[0]
        table.add_row(row["name"], row["weights"] or "-", row["status"], where, lic)
    console = Console()
    console.print(table)
    console.print("weights are never downloaded; put published files in "
                  + ", ".join(str(d) for d in registry.cache_dirs())
                  + f" (${registry.ENV_CACHE} first when set); `openjmp models inspect NAME` for details")
    return 0


def _registry_info(name: str | None) -> dict:
    from openjmp.models import registry

    if name is None:
        return {}
    entry = registry.get_model_entry(name)
    cfg = entry.pretrained
    info = {"name": entry.name, "description": entry.description}
    if cfg is not None:
        info.update(status=registry.weight_status(entry.name)[0], license=cfg.license,
                    citation=cfg.citation, url=cfg.url, sha256=cfg.sha256)
    return {k: v for k, v in info.items() if v is not None}


def _summary(path: Path, raw: bool, preset: str | None, name: str | None = None) -> dict:
    from openjmp.models import registry

    if registry.is_openjmp_model_file(path):
        from openjmp.checkpoints.format import load_model_file

        mf = load_model_file(path)
        name = name or registry.registry_name_of_file(path)
        file_preset = mf.model_config.get("preset")
        return {
            **_registry_info(name),
            "file": str(path), "kind": "openjmp model file", "format_version": mf.format_version,
            # the shipped model is called by its registry name (its file records the preset it
            # was built from with overrides)
            "preset": name or (registry.canonical_name(file_preset) if file_preset else None),
            "tensors": len(mf.state_dict),
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
        **_registry_info(name),
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
    from openjmp.models import registry

    path = registry.resolve_model(args.file)
    name = None if Path(str(args.file)).expanduser().exists() else registry.canonical_name(str(args.file))
    summary = _summary(path, args.raw, args.preset, name)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        text = str(value)
        if isinstance(value, dict) and len(text) > 160:  # heads, extra: names here, all with --json
            text = f"{len(value)} entries: {', '.join(map(str, value))} (--json for everything)"
        print(f"{key:<{width}}  {text}")
    return 0


def run_convert(args) -> int:
    from openjmp.checkpoints.convert import convert_jmp_checkpoint

    digest = convert_jmp_checkpoint(args.source, args.destination, preset=args.preset,
                                    use_ema=not args.raw, alias_values=args.alias_values)
    print(f"wrote {args.destination} (sha256 {digest})")
    return 0


def run_export(args) -> int:
    from openjmp.export import export_model

    try:
        out = export_model(args.model, args.out, format=args.format, head=args.head,
                           dtype=args.dtype, use_ema=not args.raw)
    except NotImplementedError as exc:
        print(f"openjmp models export: {exc}")
        return 2
    print(f"wrote {out} (TorchScript; torch.jit.load, forward(atomic_numbers, positions, cell, pbc, "
          f"batch) -> energy, forces)")
    return 0
