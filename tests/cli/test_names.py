"""Models and configs by name (issue 16, items 1 and 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openjmp.cli.main import main
from openjmp.configuration import ConfigError, config_names, load_config, resolve_config
from openjmp.models import registry


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENJMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "cache"


def test_names_and_aliases_resolve():
    shipped = registry.resolve_model("openjmp-mini")
    assert shipped.is_file() and shipped.name == "openjmp-mini.pt"
    assert registry.resolve_model("openjmp_mini") == shipped
    assert registry.resolve_model(str(shipped)) == shipped  # a path
    assert registry.canonical_name("jmp_s") == "jmp-s" and registry.canonical_name("JMP-L") == "jmp-l"
    assert registry.get_model_entry("jmp_s").name == "jmp-s"
    with pytest.raises(registry.UnknownModelError, match="unknown model 'nope'.*openjmp-mini"):
        registry.resolve_model("nope")
    with pytest.raises(FileNotFoundError, match="no such model file"):
        registry.resolve_model("runs/x/model.pt")


def test_published_entries_carry_licence_address_and_citation():
    for name in ("jmp-s", "jmp-l"):
        cfg = registry.get_model_entry(name).pretrained
        assert cfg.url.startswith("https://") and cfg.url.endswith(f"/{name}.pt")
        assert "CC-BY-NC" in cfg.license and "ICLR 2024" in cfg.citation
    mini = registry.get_model_entry("openjmp-mini").pretrained
    assert mini.sha256 and mini.packaged


def test_missing_published_file_gives_one_message(empty_cache):
    with pytest.raises(FileNotFoundError) as info:
        registry.resolve_model("jmp_s")
    message = str(info.value)
    assert "\n" not in message
    assert "https://jmp-iclr-datasets.s3.amazonaws.com/jmp-s.pt" in message  # where to download
    assert str(empty_cache / "jmp-s.pt") in message  # where to put it ($OPENJMP_CACHE first)
    assert "CC-BY-NC" in message and "SHA-256" in message


def test_cache_honours_openjmp_cache(empty_cache):
    empty_cache.mkdir()
    (empty_cache / "jmp-l.pt").write_bytes(b"x")
    with pytest.warns(UserWarning, match="bytes"):  # the size of jmp-l.pt is checked
        assert registry.resolve_model("jmp-l") == empty_cache / "jmp-l.pt"
    assert registry.weight_status("jmp-l") == ("present", empty_cache / "jmp-l.pt")
    assert registry.weight_status("jmp-s") == ("missing", None)
    assert registry.weight_status("openjmp-mini")[0] == "shipped"
    assert registry.weight_status("openjmp-tiny") == ("none", None)


def test_models_list_is_truthful(empty_cache, capsys):
    empty_cache.mkdir()
    (empty_cache / "jmp-s.pt").write_bytes(b"x")
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["openjmp-mini"]["status"] == "shipped" and Path(rows["openjmp-mini"]["local_file"]).is_file()
    assert rows["jmp-s"]["status"] == "present" and rows["jmp-l"]["status"] == "missing"
    assert rows["openjmp-tiny"]["status"] == "no weights"
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "shipped" in out and "missing" in out and "present" in out


def test_models_inspect_by_name_calls_it_by_its_name(capsys):
    assert main(["models", "inspect", "openjmp-mini", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["name"] == "openjmp-mini" and summary["preset"] == "openjmp-mini"
    assert summary["status"] == "shipped"
    # the shipped file given by path is recognised too
    assert main(["models", "inspect", str(registry.resolve_model("openjmp-mini"))]) == 0
    out = capsys.readouterr().out
    assert "openjmp-mini" in out and "openjmp_tiny" not in out


def test_calculator_takes_a_name():
    from ase.build import molecule

    from openjmp.calculator import JMPCalculator

    atoms = molecule("H2O")
    atoms.calc = JMPCalculator("openjmp-mini")
    assert atoms.calc.checkpoint == registry.resolve_model("openjmp-mini")
    assert abs(atoms.get_potential_energy()) < 1e3


def test_finetune_init_checkpoint_by_name(empty_cache):
    from openjmp.training.finetune import FinetuneError, resolve_init_checkpoint
    from openjmp.training.finetune_config import FinetuneConfig

    cfg = load_config(FinetuneConfig, "finetune/mini/rmd17_ethanol")
    assert resolve_init_checkpoint(cfg) == registry.resolve_model("openjmp-mini")
    paper = load_config(FinetuneConfig, "finetune/paper/rmd17_aspirin", ["init.checkpoint=jmp_s"])
    with pytest.raises(FinetuneError, match="jmp-s.pt.*CC-BY-NC"):
        resolve_init_checkpoint(paper)


def test_config_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty folder, as from an installed wheel
    names = config_names()
    assert "finetune/mini/rmd17_ethanol" in names and "pretrain/mini" in names and "study/mini" in names
    path = resolve_config("finetune/mini/rmd17_ethanol")
    assert path.is_file() and path.name == "rmd17_ethanol.yaml"
    # the spellings docs use: configs/..., src/openjmp/configs/..., with .yaml; kind implied
    assert resolve_config("configs/finetune/mini/rmd17_ethanol.yaml") == path
    assert resolve_config("src/openjmp/configs/finetune/mini/rmd17_ethanol.yaml") == path
    assert resolve_config("mini/rmd17_ethanol", kind="finetune") == path
    with pytest.raises(ConfigError, match="did you mean finetune/mini/rmd17_ethanol"):
        resolve_config("finetune/mini/rmd17_ethanl")


def test_configs_verb(capsys, tmp_path):
    assert main(["configs", "list"]) == 0
    out = capsys.readouterr().out
    assert "finetune/mini/rmd17_ethanol" in out and "pretrain/jmp_s" in out
    assert main(["configs", "list", "study", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["study/mini"]
    assert main(["configs", "show", "finetune/mini/rmd17_ethanol"]) == 0
    assert "checkpoint: openjmp-mini" in capsys.readouterr().out
    assert main(["configs", "copy", "finetune/mini/rmd17_ethanol", str(tmp_path)]) == 0
    copied = tmp_path / "rmd17_ethanol.yaml"
    from openjmp.training.finetune_config import FinetuneConfig

    assert load_config(FinetuneConfig, copied).init.checkpoint == "openjmp-mini"


def test_finetune_help_with_a_config_name(capsys):
    with pytest.raises(SystemExit) as info:
        main(["finetune", "--config", "finetune/mini/rmd17_ethanol", "--help"])
    assert info.value.code == 0
    assert "finetune/mini/rmd17_ethanol" in capsys.readouterr().out


@pytest.mark.parametrize("argv,default", [(["predict", "--help"], "(default: 2000)"),
                                          (["md", "--help"], "(default: 300.0)"),
                                          (["evaluate", "--help"], "(default: float32)")])
def test_help_shows_defaults(argv, default, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert default in " ".join(capsys.readouterr().out.split())


def test_model_files_are_written_0644(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        model = registry.create_model("openjmp-tiny")
        path = tmp_path / "m.pt"
        registry.save_model_file(model, path, normalization={}, heads={})
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
