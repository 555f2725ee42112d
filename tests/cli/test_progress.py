"""A fine-tune run whose output is not a terminal prints progress lines (step/total, rate, ETA,
loss), a line after each validation, and none of Lightning's advertisements (issue 16, item 4)."""

from __future__ import annotations

import re

from openjmp.cli.main import main
from openjmp.training.progress import DEFAULT_INTERVAL_S, format_duration, progress_line


def test_progress_line_format():
    line = progress_line(40, 500, 30.0, 0.4312)
    assert line.startswith("step 40/500 (8%)") and "1.33 steps/s" in line and "ETA 5m45s" in line
    assert "loss 0.4312" in line and "elapsed 30s" in line
    assert format_duration(7322) == "2h02m" and DEFAULT_INTERVAL_S <= 60


def test_finetune_to_a_log_prints_progress(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("OPENJMP_PROGRESS_INTERVAL", "0")  # a line every step (default: every 30 s)
    monkeypatch.chdir(tmp_path)
    rc = main(["finetune", "--config", "finetune/mini/rmd17_ethanol", "--output-dir", "run",
               "--set", "trainer.max_steps=4", "--set", "trainer.val_every_n_steps=2",
               "--set", "optim.warmup_steps=1", "--set", "data.max_test_records=3",
               "--set", "data.reader_options.train_size=20", "--set", "data.reader_options.val_size=4"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    steps = re.findall(r"\[fine-tune\] step (\d+)/4 \(\d+%\) \| [\d.]+ steps/s \| ETA \S+ \| loss [\d.e+-]+", out)
    assert [int(s) for s in steps] == [1, 2, 3, 4], out
    assert re.search(r"\[fine-tune\] validation at step 2: val/loss [\d.]+", out)
    assert re.search(r"\[fine-tune\] validation at step 4: val/loss [\d.]+", out)
    assert "done: 4 steps" in out and (tmp_path / "run" / "model.pt").is_file()
    assert "Epoch 0/-2" not in out + err
    for noise in ("litlogger", "litmodels", "Tip:", "TPU available", "LeafSpec", "logging interval"):
        assert noise not in out + err, noise


def test_quiet_prints_only_the_result(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("OPENJMP_VERBOSITY", "0")  # restored after the test (main sets it)
    monkeypatch.chdir(tmp_path)
    rc = main(["finetune", "--quiet", "--config", "finetune/mini/rmd17_ethanol", "--output-dir", "run",
               "--set", "trainer.max_steps=1", "--set", "trainer.val_every_n_steps=1",
               "--set", "optim.warmup_steps=1", "--set", "data.max_test_records=2",
               "--set", "data.reader_options.train_size=10", "--set", "data.reader_options.val_size=2"])
    out, err = capfd.readouterr()
    assert rc == 0 and "[fine-tune]" not in out and "outputs in" in out
