"""The README's first command, as a new user runs it: tools/demo.sh records redun's compile
example twice into a fresh repository and `objstore log` shows both executions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_readme_demo_runs_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBJSTORE_", "REDUN_"))}
    env.update(HOME=str(tmp_path / "home"), DEMO_DIR=str(tmp_path / "demo"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(["bash", str(ROOT / "tools" / "demo.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout
    assert "Hello, objstore!" in out  # the second build linked the edited lib.c
    execs = [line for line in out.split("objstore log", 1)[-1].splitlines() if line.startswith("Exec ")]
    assert len(execs) == 2, out
    assert (tmp_path / "demo" / ".objstore" / "objstore.json").exists()
    # redun's own CLI on the demo's repository: the replica answers, and `redun db info` names
    # objstore instead of creating an empty sqlite file (the demo configures redun with
    # `objstore init --redun`, as the README tells users to).
    demo = tmp_path / "demo"
    info = subprocess.run(["redun", "db", "info"], cwd=demo, env=env, capture_output=True, text=True, timeout=120)
    assert info.returncode == 0, info.stdout + info.stderr
    assert "objstore repository" in info.stdout + info.stderr, info.stdout + info.stderr
    assert not (demo / ".redun" / "redun.db").exists()
    log = subprocess.run(["redun", "log"], cwd=demo, env=env, capture_output=True, text=True, timeout=120)
    assert log.returncode == 0 and log.stdout.count("Exec ") == 2, log.stdout + log.stderr
