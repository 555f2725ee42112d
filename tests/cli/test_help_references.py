"""Every config path and config name that a --help text, README.md or docs/*.md mentions exists
(issue 16, item 2). Checked from an empty folder, as a user of the installed package would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openjmp.cli.main import VERBS, main
from openjmp.configuration import configs_root, resolve_config

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = {"models": ["list", "inspect", "convert"], "configs": ["list", "show", "copy"],
               "data": ["convert", "inspect", "generate"]}

PATH_RE = re.compile(r"(?:src/openjmp/)?configs/[A-Za-z0-9_./*{}-]+")
CONFIG_ARG_RE = re.compile(r"--config[ =]([^\s`'\")\],;]+)")


def help_texts() -> dict[str, str]:
    texts = {}
    for verb in VERBS:
        for argv in [[verb, "--help"]] + [[verb, sub, "--help"] for sub in SUBCOMMANDS.get(verb, [])]:
            import contextlib
            import io

            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
                main(argv)
            texts["openjmp " + " ".join(argv)] = buffer.getvalue()
    return texts


def doc_texts() -> dict[str, str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {str(p.relative_to(ROOT)): p.read_text() for p in files if p.is_file()}


def references(text: str) -> set[str]:
    refs = {m.group(0).rstrip(".") for m in PATH_RE.finditer(text)}
    for m in CONFIG_ARG_RE.finditer(text):
        arg = m.group(1).rstrip(".")
        # a file the user writes (my.yaml) or a metavar (NAME|PATH) is not a reference
        if "/" in arg and "|" not in arg and not arg.isupper() and not arg.startswith("$"):
            refs.add(arg)
    return refs


def check(ref: str) -> str | None:
    """None when ``ref`` resolves, else why not."""
    name = ref
    for prefix in ("src/openjmp/", "configs/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if any(c in name for c in "*{}"):  # a glob: it must match something
        return None if list(configs_root().glob(name)) else "glob matches nothing"
    if name.endswith("/") or name == "":
        return None if (configs_root() / name).is_dir() else "no such folder"
    try:
        resolve_config(ref)
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    return None


def test_every_mentioned_config_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # configs/ of the checkout must not help
    texts = {**help_texts(), **doc_texts()}
    assert any("finetune --help" in k for k in texts) and "README.md" in texts
    problems, seen = [], 0
    for where, text in texts.items():
        for ref in sorted(references(text)):
            seen += 1
            why = check(ref)
            if why:
                problems.append(f"{where}: {ref}: {why}")
    assert seen >= 10, "the reference extraction found almost nothing"
    assert not problems, "\n".join(problems)


def test_the_extraction_catches_a_wrong_name():
    refs = references("openjmp finetune --config configs/finetune/mini_rmd17_ethanol.yaml\n"
                      "openjmp finetune --config finetune/mini/rmd17_ethanol --config my.yaml --config NAME|PATH")
    assert refs == {"configs/finetune/mini_rmd17_ethanol.yaml", "finetune/mini/rmd17_ethanol"}
    assert check("configs/finetune/mini_rmd17_ethanol.yaml") is not None
    assert check("finetune/mini/rmd17_ethanol") is None
