"""`objstore graph`: DOT laid out by Graphviz, Mermaid, SVG, and the self-contained HTML report
checked in headless Chromium (no console errors, no network, the expected nodes, a screenshot),
on the compile example recorded by real `redun run`s."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import recorded
from browser import png_size

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "compile"
TASKS = ("compile", "link", "make_prog", "make")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("graph")
    work = base / "work"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns(".redun", ".objstore", "*.o", "prog", "prog2"))
    (base / "home").mkdir()
    d = recorded.Dir(work, recorded.clean_env(base / "home"))
    d.objstore("init", "--redun")
    d.redun("run", "workflow.py", "make")
    (work / "lib.c").write_text((work / "lib.c").read_text().replace("Hello, World!", "Hello, graph!"))
    d.redun("run", "workflow.py", "make")
    return d


def test_dot_is_valid_graphviz_and_shows_the_dataflow(project, graphviz_dot, tmp_path):
    dot = project.objstore("graph", "-").stdout
    svg = subprocess.run([graphviz_dot, "-Tsvg"], input=dot, capture_output=True, text=True, check=True).stdout
    assert "<svg" in svg
    for name in TASKS:
        assert f"redun.examples.compile.{name}\\n" in dot
    # Files are notes with their path; a cached job's node is dashed; the call tree is dotted.
    assert re.search(r'shape=note [^\]]*label="prog\.c"', dot)
    assert "[CACHED]" in dot and "dashed" in dot and "style=dotted" in dot
    # Arguments are named from the task's source.
    assert '[label="c_file"]' in dot and '[label="prog_path"]' in dot
    # A call node: its subtree only.
    call = json.loads(project.objstore("log", "-", "--json").stdout)["root"]["children"][0]["call_hash"]
    sub = project.objstore("graph", call[:10]).stdout
    assert "make_prog" in sub and "redun.examples.compile.make\\n" not in sub


def test_mermaid(project):
    text = project.objstore("graph", "~2", "--format", "mermaid").stdout
    assert text.startswith("flowchart LR\n")
    assert "-.->" in text and "-->" in text and "classDef cached" in text
    assert "redun.examples.compile.link" in text


def test_svg(project):
    svg = project.objstore("graph", "-", "--format", "svg").stdout
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg[:500]
    assert svg.count('class="node"') >= 10


def test_html_report_in_chromium(project, load_page, tmp_path):
    report = tmp_path / "report.html"
    proc = project.objstore("graph", "-", "--format", "html", "-o", str(report))
    assert f"wrote {report}" in proc.stderr
    page = load_page(report)
    assert page.console_errors == []
    assert page.external_requests == []  # self-contained: opens from disk with no network
    texts = " ".join(page.texts("#graph svg g.node text"))
    for name in TASKS:
        assert f"redun.examples.compile.{name}" in texts
    assert "prog.c" in texts and "[CACHED]" in texts
    rows = page.texts("#jobs tbody tr")
    assert len(rows) == 9 and sum("CACHED" in r for r in rows) >= 2
    meta = json.loads(page.evaluate("document.getElementById('objstore-graph').textContent"))
    assert page.count("#graph svg g.node") == meta["nodes"] and meta["left_out"] == 0
    # Clicking a call node marks its job row.
    marked = page.run(lambda p: (p.click("#graph svg g.node[id^=c_] >> nth=0"),
                                 p.evaluate("document.querySelectorAll('#jobs tr.hit').length"))[1])
    assert marked >= 1
    # The filter box narrows the table.
    shown = page.run(lambda p: (p.fill("#filter", "link"), p.evaluate(
        "Array.from(document.querySelectorAll('#jobs tbody tr')).filter(r => r.style.display !== 'none').length"))[1])
    assert shown == 2
    assert page.console_errors == []
    width, height = png_size(page.screenshot_path)
    assert width > 200 and height > 200


def test_without_graphviz_svg_and_html_say_how_to_get_it(project, tmp_path):
    env = {**project.env, "PATH": str(recorded.BIN)}  # python's dir only: no dot
    d = recorded.Dir(project.path, env)
    proc = d.objstore("graph", "-", "--format", "html", check=1)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("objstore: error: --format html needs Graphviz's `dot`") and "apt-get install graphviz" in last
    assert "digraph" in d.objstore("graph", "-").stdout  # dot text needs no Graphviz


def test_bad_targets(project):
    value = json.loads(project.objstore("log", "-", "--json").stdout)["root"]["call_hash"]
    result = json.loads(project.objstore("log", value, "--json").stdout)["result_hash"]
    proc = project.objstore("graph", result, check=1)
    assert "draw an execution, a job or a call node" in proc.stderr.strip().splitlines()[-1]
    assert project.objstore("graph", "-", "--max-calls", "0", check=2).returncode == 2
    cut = project.objstore("graph", "-", "--max-calls", "2").stdout
    assert "more call nodes not drawn" in cut
