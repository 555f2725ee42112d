"""The README's "Quick start" block runs verbatim in an empty folder, each command consuming the
previous one's output (issue 16, item 3). Slow: one full mini fine-tune (minutes on 2 cores)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import pytest

ROOT = Path(__file__).resolve().parents[2]


def quickstart_block() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- quickstart:begin -->\s*```bash\n(.*?)```\s*<!-- quickstart:end -->", text, re.S)
    assert match, "README.md has no quickstart block between the markers"
    return match.group(1)


def test_quickstart_block_uses_only_openjmp_commands():
    commands = [line for line in quickstart_block().splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) >= 6 and all(c.startswith("openjmp ") for c in commands)
    verbs = [c.split()[1] for c in commands]
    assert {"finetune", "evaluate", "predict", "md", "relax"} <= set(verbs)


@pytest.mark.slow
def test_readme_quickstart_runs_verbatim(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               OPENJMP_CACHE=str(tmp_path / "cache"))
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", quickstart_block()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"README quick start: {seconds:.0f} s")
    summary = json.loads((tmp_path / "ethanol" / "summary.json").read_text())
    evaluation = json.loads((tmp_path / "ethanol" / "eval" / "metrics.json").read_text())
    assert evaluation["records"] == summary["test_records"] == 150
    assert evaluation["metrics"]["energy/forces"]["mae"] == pytest.approx(
        summary["test"]["metrics"]["energy/forces"]["mae"], rel=1e-6)
    assert len(ase.io.read(tmp_path / "test.extxyz", ":")) == 3
    predicted = ase.io.read(tmp_path / "test.pred.extxyz", ":")
    assert len(predicted) == 3 and all(a.get_forces().shape == (9, 3) for a in predicted)
    assert len(ase.io.read(tmp_path / "md.traj", ":")) > 1
    relaxed = ase.io.read(tmp_path / "relaxed.extxyz")
    assert len(relaxed) == 9
    # no progress-free silence and no Python traceback in what the user saw
    assert "Traceback" not in proc.stderr + proc.stdout
