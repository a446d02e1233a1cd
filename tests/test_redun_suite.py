"""redun's own shipped tests, run against ObjstoreBackend as part of this project's suite.

Runs tools/redun_suite.sh (the whole of redun's suite with every Scheduler on a fresh objstore
repository; about two minutes here, against ~11 for the same suite on sqlite) in a subprocess
and fails with the list of redun tests that failed. What is not run and why:
tests/redun_deselect.txt.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Passed by the objstore run when this list was made; a drop means tests stopped being collected.
MIN_PASSED = 550  # 553 with the SQL replica serving redun's SQL-only tests


def run_suite(tmp_path: Path, name: str, *pytest_args: str) -> tuple[list[str], list[str], int, str]:
    """(failed node ids, one-line reasons, passed count, output tail) of one suite run."""
    report = tmp_path / f"{name}.xml"
    cmd = ["bash", str(ROOT / "tools" / "redun_suite.sh"), "--backend", "objstore", "--",
           f"--junitxml={report}", *pytest_args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    tail = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report.exists(), f"suite did not run:\n{tail}"
    failed, reasons, passed = [], [], 0
    for case in ET.parse(report).getroot().iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        node = case.get("classname").replace(".", "/") + ".py::" + case.get("name")
        if bad is not None:
            failed.append(node)
            first = (bad.get("message") or "").splitlines()[:1]
            reasons.append(f"{node}: {first[0] if first else ''}")
        elif case.find("skipped") is None:
            passed += 1
    return failed, reasons, passed, tail


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_redun_suite_passes_on_objstore(tmp_path):
    failed, reasons, passed, tail = run_suite(tmp_path, "full")
    assert passed >= MIN_PASSED, f"only {passed} redun tests passed:\n{tail}"
    if failed:
        # A few redun tests race threads (test_cse_scopes: CSE against a still-pending job, which
        # a fast backend's first job often finishes before the second is evaluated; measured
        # here: 1 run in 4 alone) and fail under load on sqlite as well. A test fails here only
        # if it fails in each of three more runs alone.
        again = failed
        for attempt in range(3):
            again, reasons, _, _ = run_suite(tmp_path, f"retry{attempt}", *again)
            if not again:
                break
        print("passed on retry (timing-dependent under load):", sorted(set(failed) - set(again)))
        assert not again, f"{len(again)} redun tests fail on objstore:\n" + "\n".join(reasons)


def test_deselect_file_names_real_tests():
    """Every entry of the deselect file names a test that exists: a renamed test in a new redun
    release must not silently leave a stale (and so meaningless) entry behind."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import redun_plugin
    finally:
        sys.path.pop(0)
    import redun

    tests_dir = Path(redun.__file__).parent / "tests"
    for test_id in redun_plugin.read_deselect(ROOT / "tests" / "redun_deselect.txt"):
        file, _, rest = test_id.partition("::")
        path = tests_dir / file
        assert path.exists(), test_id
        if rest:
            name = rest.split("::")[-1]
            assert f"def {name}(" in path.read_text(), test_id
