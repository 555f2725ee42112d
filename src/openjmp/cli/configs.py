"""``openjmp configs list|show|copy``: the configs shipped inside the package, by name.

A config name is its path under ``openjmp/configs`` without ``.yaml``
(``finetune/mini/rmd17_ethanol``); every ``--config`` option takes such a name or a file path.

Examples:
  openjmp configs list
  openjmp configs list finetune
  openjmp configs show finetune/mini/rmd17_ethanol
  openjmp configs copy finetune/mini/rmd17_ethanol my_ethanol.yaml
  openjmp finetune --config finetune/mini/rmd17_ethanol
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers, verb: str, help_text: str) -> None:
    p = subparsers.add_parser(verb, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="configs_command", metavar="COMMAND")
    p_list = sub.add_parser("list", help="names of the shipped configs")
    p_list.add_argument("kind", nargs="?", default=None, help="only this kind (finetune, pretrain, study, models)")
    p_list.add_argument("--json", action="store_true", help="print JSON (name, path, description)")
    p_list.set_defaults(func=run_list)
    p_show = sub.add_parser("show", help="print a shipped config")
    p_show.add_argument("name", metavar="NAME", help="config name (openjmp configs list) or path")
    p_show.add_argument("--path", action="store_true", help="print only its file path")
    p_show.set_defaults(func=run_show)
    p_copy = sub.add_parser("copy", help="copy a shipped config to a file to edit")
    p_copy.add_argument("name", metavar="NAME", help="config name (openjmp configs list)")
    p_copy.add_argument("destination", type=Path, help="file to write (a folder: NAME's file name in it)")
    p_copy.add_argument("--force", action="store_true", help="overwrite an existing file")
    p_copy.set_defaults(func=run_copy)


def describe(path: Path) -> str:
    """The first comment line of a config file (its one-line description)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("#"):
                    return line.lstrip("#").strip()
                if line.strip():
                    break
    except OSError:
        pass
    return ""


def run_list(args) -> int:
    from openjmp.configuration import CONFIG_KINDS, ConfigError, config_names, configs_root

    if args.kind is not None and args.kind not in CONFIG_KINDS:
        raise ConfigError(f"unknown config kind {args.kind!r} (one of {', '.join(CONFIG_KINDS)})")
    root = configs_root()
    rows = [{"name": n, "path": str(root / f"{n}.yaml"), "description": describe(root / f"{n}.yaml")}
            for n in config_names(args.kind)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['description']}")
    print(f"{len(rows)} configs in {root}; use a name with --config, e.g. "
          "openjmp finetune --config finetune/mini/rmd17_ethanol")
    return 0


def run_show(args) -> int:
    from openjmp.configuration import resolve_config

    path = resolve_config(args.name)
    if args.path:
        print(path)
        return 0
    print(f"# {path}")
    print(path.read_text(), end="")
    return 0


def run_copy(args) -> int:
    from openjmp.configuration import ConfigError, resolve_config

    path = resolve_config(args.name)
    dest = args.destination / path.name if args.destination.is_dir() else args.destination
    if dest.exists() and not args.force:
        raise ConfigError(f"{dest}: exists (--force to overwrite)")
    text = path.read_text()
    if "asset://" not in text and "data:" in text:
        text = f"# copied from {path}: relative paths are now resolved against this file's folder\n" + text
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    print(f"wrote {dest}")
    return 0
