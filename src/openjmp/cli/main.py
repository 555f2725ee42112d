"""``openjmp`` entry point.

Every verb lives in its own module ``openjmp.cli.<module>`` exposing ``register(subparsers)``,
which adds its parser and sets ``func`` (a callable taking the parsed args, returning an exit
code). Modules are imported lazily only for the verb that runs, so ``openjmp --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb -> (module, one-line help). Add a verb by adding its module here.
VERBS: dict[str, tuple[str, str]] = {
    "inspect": ("openjmp.cli.inspect", "summarise a structure file that ASE reads"),
    "demo": ("openjmp.cli.demo", "run the main job on the embedded default (the miniature JMP study)"),
    "check-reference": ("openjmp.cli.check_reference", "compare GemNet-OC with a reference fixture"),
    "data": ("openjmp.cli.data", "convert, inspect or generate datasets (data convert|inspect|generate)"),
    "pretrain": ("openjmp.cli.pretrain", "joint multi-domain pre-training from a YAML config"),
    "finetune": ("openjmp.cli.finetune", "fine-tune new heads on a pre-trained backbone from a YAML config"),
    "evaluate": ("openjmp.cli.evaluate", "metrics and parity plots of a model file on a dataset"),
    "study": ("openjmp.cli.study", "the miniature JMP study: pre-trained vs scratch fine-tuning, with a report"),
    "models": ("openjmp.cli.models", "list presets, inspect checkpoints, convert JMP checkpoints (models list|inspect|convert)"),
    "predict": ("openjmp.cli.predict", "predict energies, forces, stress and properties of a structure file"),
    "md": ("openjmp.cli.md", "molecular dynamics (NVE / Langevin) with a model file over ASE"),
    "relax": ("openjmp.cli.relax", "relax positions (and cell) with a model file over ASE (FIRE / BFGS)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openjmp",
        description="Joint Multi-domain Pre-training of GemNet-OC atomistic models.",
    )
    from openjmp import __version__

    parser.add_argument("--version", action="version", version=f"openjmp {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (module_name, help_text) in VERBS.items():
        if only is not None and verb != only:
            subparsers.add_parser(verb, help=help_text, add_help=False)
            continue
        module = importlib.import_module(module_name)
        module.register(subparsers, verb, help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=verb if verb in VERBS else None)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.verb is None else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
