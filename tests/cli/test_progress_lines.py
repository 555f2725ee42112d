"""Progress lines (count/total, rate, ETA) of pretrain, md, relax, study and data generate when
stdout is not a terminal, none with --quiet, and the reporter's timing (issue 16, item 4)."""

from __future__ import annotations

import importlib.util
import io
import json
import re
from pathlib import Path

import ase.io
import pytest
import yaml
from ase.build import molecule

from openjmp.cli.main import main
from openjmp.progress import Progress, format_rate, progress_line

RATE = r"(?:[\d.]+ \w+s/s|[\d.]+ s/\w+)"  # 1.32 steps/s, or 42.0 s/run when slow
LINE = r"\[{label}\] {unit} (\d+)/{total} \(\d+%\) \| " + RATE + r" \| ETA ≤?\S+ \|{fields} elapsed \S+$"


def lines(out: str, label: str, unit: str, total: int | str, fields: str = r"(?: [^|]+ \|)*") -> list[int]:
    """Counts of the progress lines of ``label`` (every ``[label] UNIT ...`` line must be one)."""
    pattern = re.compile(LINE.format(label=re.escape(label), unit=unit, total=total, fields=fields))
    counts = []
    for text in out.splitlines():
        if text.startswith(f"[{label}] {unit} "):
            match = pattern.match(text)
            assert match, text
            counts.append(int(match.group(1)))
    return counts


@pytest.fixture
def log_env(monkeypatch):
    monkeypatch.setenv("OPENJMP_PROGRESS_INTERVAL", "0")  # a line every update (default: every 30 s)
    monkeypatch.setenv("OPENJMP_VERBOSITY", "0")  # restored after the test (main sets it)


@pytest.fixture
def water(tmp_path):
    path = tmp_path / "h2o.extxyz"
    ase.io.write(path, molecule("H2O"))
    return path


# -- the reporter --------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_reporter_prints_first_every_interval_and_last(monkeypatch):
    monkeypatch.setenv("OPENJMP_VERBOSITY", "0")
    clock, stream = Clock(), io.StringIO()
    with Progress("md", total=100, interval_s=10, stream=stream, clock=clock) as bar:
        for step in range(0, 101):
            clock.t += 0.5  # 2 steps/s
            bar.update(step, T=lambda: "300.0 K")
    text = stream.getvalue().splitlines()
    # step 0 is the start; then the first step, a line every 10 s (20 steps), the last step
    assert [int(re.match(r"\[md\] step (\d+)", t).group(1)) for t in text] == [1, 21, 41, 61, 81, 100]
    assert text[0] == "[md] step 1/100 (1%) | 1.00 steps/s | ETA 1m39s | T 300.0 K | elapsed 1s"
    assert text[-1] == "[md] step 100/100 (100%) | 1.98 steps/s | ETA 0s | T 300.0 K | elapsed 50s"


def test_reporter_resumed_start_bound_close_and_lazy_fields(monkeypatch):
    monkeypatch.setenv("OPENJMP_VERBOSITY", "0")
    clock, stream = Clock(), io.StringIO()
    calls = []

    def field():
        calls.append(1)
        return "0.1 eV/Å"

    bar = Progress("relax", total=500, interval_s=30, stream=stream, clock=clock, eta_bound=True)
    for step in range(0, 8):
        bar.update(step, fmax=field)
        clock.t += 1.0
    bar.close()  # converged before the limit: the last state is printed
    bar.close()
    text = stream.getvalue().splitlines()
    assert text == ["[relax] step 1/500 (0%) | 1.00 steps/s | ETA ≤8m19s | fmax 0.1 eV/Å | elapsed 1s",
                    "[relax] step 7/500 (1%) | 1.00 steps/s | ETA ≤8m13s | fmax 0.1 eV/Å | elapsed 7s"]
    assert len(calls) == 2  # a field is evaluated only for a printed line
    # resumed: 2 of 8 runs were done before, the rate counts the runs done now; slow: s/run
    stream = io.StringIO()
    with Progress("study", total=8, unit="run", start=2, interval_s=0, stream=stream, clock=clock) as bar:
        clock.t += 40
        bar.advance(task="mols")
    assert stream.getvalue() == "[study] run 3/8 (38%) | 40.0 s/run | ETA 3m20s | task mols | elapsed 40s\n"
    assert format_rate(0.05, "run") == "20.0 s/run" and format_rate(float("nan")) == "- steps/s"
    assert progress_line(5, None, 2.0) == "step 5 | 2.50 steps/s | elapsed 2s"


def test_reporter_is_silent_when_quiet_or_disabled(monkeypatch):
    clock, stream = Clock(), io.StringIO()
    monkeypatch.setenv("OPENJMP_VERBOSITY", "-1")
    with Progress("md", total=3, interval_s=0, stream=stream, clock=clock) as bar:
        for step in range(4):
            clock.t += 1
            bar.update(step)
        bar.message("hello")
    monkeypatch.setenv("OPENJMP_VERBOSITY", "0")
    with Progress("md", total=3, interval_s=0, stream=stream, clock=clock, enabled=False) as bar:
        bar.update(3)
    assert stream.getvalue() == ""


# -- the verbs -----------------------------------------------------------------------------------


def test_md_prints_progress_lines(tmp_path, water, log_env, capfd):
    rc = main(["md", str(water), "--model", "openjmp-mini", "--steps", "4", "--interval", "2",
               "--traj", str(tmp_path / "md.traj"), "--log", str(tmp_path / "md.log")])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert lines(out, "md", "step", 4, r" T [\d.]+ K \| Etot -?[\d.]+ eV \|") == [1, 2, 3, 4], out
    assert "4 steps of nve" in out  # the summary line is unchanged
    assert len((tmp_path / "md.log").read_text().strip().splitlines()) == 4  # header + steps 0, 2, 4


def test_relax_prints_progress_lines(tmp_path, water, log_env, capfd):
    rc = main(["relax", str(water), "--model", "openjmp-mini", "--steps", "3", "--fmax", "1e-4",
               "--traj", str(tmp_path / "r.traj"), "--log", str(tmp_path / "r.log"),
               "--out", str(tmp_path / "relaxed.extxyz")])
    out, err = capfd.readouterr()
    assert rc == 1, err  # not converged in 3 steps
    assert lines(out, "relax", "step", 3, r" fmax [\d.]+ eV/Å \(target 0.0001\) \| E -?[\d.]+ eV \|") == [1, 2, 3], out
    assert "NOT converged after 3 steps" in out and (tmp_path / "relaxed.extxyz").is_file()


def test_quiet_md_and_relax_print_no_progress(tmp_path, water, log_env, capfd):
    assert main(["--quiet", "md", str(water), "--model", "openjmp-mini", "--steps", "2",
                 "--traj", str(tmp_path / "md.traj"), "--log", str(tmp_path / "md.log")]) == 0
    main(["--quiet", "relax", str(water), "--model", "openjmp-mini", "--steps", "2", "--fmax", "1e-4",
          "--traj", str(tmp_path / "r.traj"), "--log", str(tmp_path / "r.log"),
          "--out", str(tmp_path / "relaxed.extxyz")])
    out, err = capfd.readouterr()
    assert "[md]" not in out + err and "[relax]" not in out + err
    assert "2 steps of nve" in out and "NOT converged after 2 steps" in out


def test_data_generate_prints_progress_lines(tmp_path, log_env, capfd):
    rc = main(["data", "generate", "--suite", "mini", "--size", "tiny", "--out", str(tmp_path),
               "--domains", "mini-matbench", "--workers", "1"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert lines(out, "mini-matbench", "item", 6, "")[-1] == 6, out
    rc = main(["--quiet", "data", "generate", "--suite", "mini", "--size", "tiny", "--out",
               str(tmp_path / "q"), "--domains", "mini-matbench", "--workers", "1"])
    out, _ = capfd.readouterr()
    assert rc == 0 and "[mini-matbench]" not in out


def _pretrain_helpers():
    path = Path(__file__).parents[1] / "training" / "pretrain_helpers.py"
    spec = importlib.util.spec_from_file_location("_progress_pretrain_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pretrain_prints_progress_lines(tmp_path, log_env, capfd):
    helpers = _pretrain_helpers()
    helpers.make_two_domains(tmp_path)
    cfg = helpers.tiny_pretrain_config(tmp_path, tmp_path, **{
        "trainer.max_steps": 4, "trainer.val_every_n_steps": 2, "trainer.checkpoint_every_n_steps": 2,
        "trainer.progress_bar": True, "optim.warmup_steps": 1})
    config = helpers.write_config(tmp_path / "pretrain.yaml", cfg)
    rc = main(["pretrain", "--config", str(config)])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert lines(out, "pretrain", "step", 4, r" loss [\d.e+-]+ \|") == [1, 2, 3, 4], out
    assert re.search(r"^\[pretrain\] training 4 steps", out, re.M)
    assert re.search(r"^\[pretrain\] validation at step 2: val/loss [\d.]+", out, re.M)
    assert re.search(r"^\[pretrain\] done: 4 steps in \S+$", out, re.M)
    assert "outputs in" in out  # the result lines are unchanged
    for noise in ("litlogger", "litmodels", "Tip:", "Epoch 0/", "transfer_batch_to_device"):
        assert noise not in out + err, noise


def test_study_prints_runs_done_with_eta(tmp_path, log_env, capfd, monkeypatch):
    """The wiring: fine-tuning runs are stubbed (each writes a summary); the runs of a resumed
    study count as done and not towards the rate."""
    from openjmp.study import runner

    labels = []

    def fake_run(cfg: dict, log_label: str | None = None) -> str:
        labels.append(log_label)
        out = Path(cfg["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        summary = {"best_val_loss": cfg["optim"]["lr"], "steps": 4, "train_time_s": 0.1, "validation": [],
                   "test": {"metrics": {"energy": {"mae": 0.5 if cfg["init"]["kind"] == "pretrained" else 1.0}}}}
        (out / "summary.json").write_text(json.dumps(summary))
        return str(out)

    monkeypatch.setattr(runner, "_run_one", fake_run)
    (tmp_path / "pre.pt").write_bytes(b"")
    task = {"domain": "molecules", "in_pretraining_domain": True, "primary_metric": "energy",
            "finetune": {"data": {"path": "x.extxyz"}, "targets": [{"name": "energy", "kind": "scalar"}]}}
    study = {"pretrained": str(tmp_path / "pre.pt"), "steps": 4, "val_every_n_steps": 2,
             "lr_grid": [1e-3, 3e-3], "seeds": [0],
             "tasks": [dict(task, name="a"), dict(task, name="b")]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    args = ["study", "--config", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "out"), "--workers", "1"]
    assert main(args + ["--tasks", "a"]) == 0
    out, err = capfd.readouterr()
    assert lines(out, "study", "run", 4, r" task a \|") == [1, 2, 3, 4], out + err
    # in a log each run prints its own progress lines too, labelled with the run
    assert len(labels) == 4 and all(re.fullmatch(r"a/(jmp|scratch)/seed0/lr\S+", str(x)) for x in labels), labels
    assert main(args) == 0  # resumed: task a's 4 runs are done
    out, err = capfd.readouterr()
    assert lines(out, "study", "run", 8, r" task b \|") == [5, 6, 7, 8], out + err
    assert "[task 2/2] b: 4 of 4 runs to do" in out  # the per-task lines stay
    assert "mean improvement 50.0%" in out
    assert main(["--quiet"] + args) == 0
    assert "[study]" not in capfd.readouterr().out
