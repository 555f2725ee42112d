"""User mistakes end in one line ``openjmp VERB: ...`` naming the thing, exit status 2, no
traceback; ``--debug`` shows the traceback (issue 16, item 3)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from openjmp.cli.main import main


@pytest.fixture
def work(tmp_path, monkeypatch):
    import ase.io
    from ase.build import molecule

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENJMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ase.io.write(tmp_path / "h2o.extxyz", molecule("H2O"))
    (tmp_path / "garbage.xyz").write_text("hello world\nthis is not xyz\n")
    (tmp_path / "bad.yaml").write_text("seed: [1, 2\n")
    (tmp_path / "unknown_key.yaml").write_text("nonsense_key: 1\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "notamodel.pt").write_text("text, not a model\n")
    (tmp_path / "folder").mkdir()
    return tmp_path


FT = ["finetune", "--config", "finetune/mini/rmd17_ethanol"]

#: (mistake, argv, what the line must name)
MISTAKES = [
    ("structure file missing", ["predict", "missing.xyz", "--model", "openjmp-mini"], "missing.xyz"),
    ("unknown model name", ["predict", "h2o.extxyz", "--model", "openjmp-maxi"], "openjmp-maxi"),
    ("model path missing", ["predict", "h2o.extxyz", "--model", "runs/x/model.pt"], "runs/x/model.pt"),
    ("published model not downloaded", ["predict", "h2o.extxyz", "--model", "jmp-s"], "jmp-s.pt"),
    ("not a model file", ["predict", "h2o.extxyz", "--checkpoint", "notamodel.pt"], "notamodel.pt"),
    ("wrong head", ["predict", "h2o.extxyz", "--model", "openjmp-mini", "--head", "nope"], "nope"),
    ("unknown reader format", ["predict", "h2o.extxyz", "--model", "openjmp-mini", "--format", "nosuch"], "nosuch"),
    ("unreadable structure file", ["predict", "garbage.xyz", "--model", "openjmp-mini"], "garbage.xyz"),
    ("required option missing", ["predict", "h2o.extxyz"], "--model"),
    ("bad choice", ["predict", "h2o.extxyz", "--model", "openjmp-mini", "--dtype", "float16"], "float16"),
    ("bad number", ["md", "h2o.extxyz", "--model", "openjmp-mini", "--steps", "many"], "many"),
    ("device not there", ["md", "h2o.extxyz", "--model", "openjmp-mini", "--device", "cuda:7"], "cuda:7"),
    ("md structure missing", ["md", "nothere.traj", "--model", "openjmp-mini"], "nothere.traj"),
    ("cell relax of a molecule", ["relax", "h2o.extxyz", "--model", "openjmp-mini", "--cell"], "periodic"),
    ("evaluate data missing", ["evaluate", "--model", "openjmp-mini", "--data", "nodata.extxyz"], "nodata.extxyz"),
    ("evaluate empty split", ["evaluate", "--model", "openjmp-mini", "--data", "h2o.extxyz", "--split", "test"], "test"),
    ("inspect unknown model", ["models", "inspect", "nope"], "nope"),
    ("inspect published model not here", ["models", "inspect", "jmp-l"], "jmp-l.pt"),
    ("unknown config name", FT[:2] + ["finetune/mini/rmd17_ethanl"], "rmd17_ethanl"),
    ("config path missing", ["finetune", "--config", "my.yaml"], "my.yaml"),
    ("config is a folder", ["finetune", "--config", "folder"], "folder"),
    ("config not YAML", ["finetune", "--config", "bad.yaml"], "bad.yaml"),
    ("config not a mapping", ["finetune", "--config", "list.yaml"], "list.yaml"),
    ("unknown YAML key", ["finetune", "--config", "unknown_key.yaml"], "nonsense_key"),
    ("wrong type in --set", FT + ["--set", "optim.lr=fast"], "optim.lr"),
    ("unknown key in --set", FT + ["--set", "optim.lrr=1e-4"], "optim.lrr"),
    ("--set without =", FT + ["--set", "optim.lr"], "optim.lr"),
    ("unknown init checkpoint", FT + ["--set", "init.checkpoint=openjmp-huge"], "openjmp-huge"),
    ("pretrain given a study config", ["pretrain", "--config", "study/mini"], "mini.yaml"),
    ("unknown config kind", ["configs", "list", "recipes"], "recipes"),
    ("configs show unknown", ["configs", "show", "finetune/mini/nothing"], "finetune/mini/nothing"),
    ("study unknown task", ["study", "--tasks", "qm7"], "qm7"),
    ("data inspect missing", ["data", "inspect", "nothing.extxyz"], "nothing.extxyz"),
    ("inspect missing structure", ["inspect", "nothing.cif"], "nothing.cif"),
    ("export to an unknown file type", ["data", "export", "h2o.extxyz", "--out", "h2o.csv"], "h2o.csv"),
    ("export over an existing file", ["data", "export", "h2o.extxyz", "--out", "h2o.extxyz"], "--overwrite"),
    ("--splits without --split", ["data", "export", "--splits", "bad.yaml", "--out", "x.extxyz"], "--split"),
    ("not a splits file", ["evaluate", "--model", "openjmp-mini", "--splits", "list.yaml", "--split", "test"],
     "list.yaml"),
    ("evaluate without data or splits", ["evaluate", "--model", "openjmp-mini"], "--data"),
    ("bad reader option", ["evaluate", "--model", "openjmp-mini", "--data", "h2o.extxyz", "-o", "energy_kee=x"],
     "energy_kee"),
]


def run_cli(argv) -> int:
    try:
        return main(list(argv))
    except SystemExit as exc:  # argparse's own exits
        return exc.code


def test_at_least_twenty_mistakes_are_listed():
    assert len(MISTAKES) >= 20 and len({m[0] for m in MISTAKES}) == len(MISTAKES)


@pytest.mark.parametrize("mistake,argv,named", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_user_mistake_is_one_line_and_status_2(work, capsys, mistake, argv, named):
    rc = run_cli(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (mistake, rc, err)
    assert len(lines) == 1, (mistake, err)
    assert lines[0].startswith(f"openjmp {argv[0]}"), lines[0]
    assert named in lines[0], (named, lines[0])
    assert "Traceback" not in err + out


def _cli(args, cwd, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "openjmp.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_debug_shows_the_traceback(work):
    env = {"OPENJMP_CACHE": str(work / "cache")}
    plain = _cli(["models", "inspect", "nope"], work, env)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().count("\n") == 0 and plain.stderr.startswith("openjmp models inspect: ")
    debug = _cli(["models", "inspect", "nope", "--debug"], work, env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "UnknownModelError" in debug.stderr
