"""One workflow recorded by real `redun run`s twice: into redun's own sqlite backend (the oracle)
and into objstore (`objstore init --redun`), with the same commands in the same order, so what
redun prints for the sqlite copy is what objstore (and redun through objstore's replica) must
print for the objstore copy, up to execution/job ids and times.

    rec = record(tmp_path_factory.mktemp("q"))      # -> Recorded(sqlite=Dir, objstore=Dir)
    rec.objstore.objstore("log", "--job")           # objstore's CLI in a subprocess
    rec.sqlite.redun("log", "--job")                # redun's CLI in a subprocess
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKFLOW = HERE / "workflows" / "query_wf.py"
BIN = Path(sys.executable).parent
# redun run <args> in order; `fails` exits non-zero (its job raises), the second main is all cached.
RUNS = [
    ["run", "query_wf.py", "main", "--x", "3"],
    ["run", "query_wf.py", "fails"],
    ["run", "query_wf.py", "main", "--x", "3"],
]
TAGS = [["tag", "add", "-", "env=dev", "team=ml"], ["tag", "update", "~2", "project=other"]]


_BATCH = """
import io, json, sys
forms = json.load(sys.stdin)
outputs = []
for form in forms:
    buffer = io.StringIO()
    if "{program}" == "redun":
        from redun.cli import RedunClient, RedunClientError
        argv = ["redun", *form]
        if form[0] == "log":
            argv.insert(2, "--no-pager")
        try:
            RedunClient(stdout=buffer).execute(argv)
        except RedunClientError as error:
            buffer.write(f"{{type(error).__name__}}: {{error}}\\n")
    else:
        from objstore.cli import main
        main(list(form), stdout=buffer, stderr=sys.stderr)
    outputs.append(buffer.getvalue())
sys.stdout.write(json.dumps(outputs))
"""


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OBJSTORE_", "REDUN_")) and k not in ("XDG_CACHE_HOME", "PAGER")}  # fmt: skip
    env["HOME"] = str(home)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return env


@dataclass
class Dir:
    path: Path
    env: dict[str, str]

    def run(self, cmd: list[str], *, check: int | None = 0, stdin: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=300,
                              input=stdin)  # fmt: skip
        if check is not None:
            assert proc.returncode == check, (cmd, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
        return proc

    def redun(self, *args: str, check: int | None = 0, stdin: str | None = None) -> subprocess.CompletedProcess:
        if args and args[0] == "log":
            args = ("log", "--no-pager", *args[1:])
        return self.run([str(BIN / "redun"), *args], check=check, stdin=stdin)

    def objstore(self, *args: str, check: int | None = 0, stdin: str | None = None) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "objstore.cli", *args], check=check, stdin=stdin)

    def batch(self, program: str, forms: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
        """stdout of many commands of ``program`` ("redun" or "objstore"), each run as its
        console script runs it (a fresh client: redun's RedunClient().execute(argv), objstore's
        objstore.cli.main(argv)), in one Python process: each `redun` start costs a second."""
        code = _BATCH.format(program=program)
        proc = self.run([sys.executable, "-c", code], stdin=json.dumps([list(f) for f in forms]))
        return {tuple(f): out for f, out in zip(forms, json.loads(proc.stdout))}


@dataclass
class Recorded:
    sqlite: Dir
    objstore: Dir


def _prepare(path: Path, home: Path) -> Dir:
    path.mkdir(parents=True)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(WORKFLOW, path / WORKFLOW.name)
    return Dir(path, clean_env(home))


def record_sqlite(base: Path) -> Dir:
    """The oracle: the workflow recorded into redun's own sqlite backend."""
    sq = _prepare(base / "sqlite", base / "home-sqlite")
    sq.redun("init")
    (sq.path / ".redun" / "redun.ini").write_text("[scheduler]\nignore_warnings = namespace\n")
    _replay(sq)
    return sq


def record_objstore(base: Path, *, url: str | None = None, storage_options: str | None = None,
                    name: str = "objstore") -> Dir:
    """The same workflow recorded into objstore (`objstore init [URL] --redun`). A bucket's
    ``storage_options`` (JSON) go into redun.ini as objstore_storage_options, the one setting
    `redun run`, redun's CLI and objstore's CLI then all read."""
    d = _prepare(base / name, base / f"home-{name}")
    (d.path / ".redun").mkdir()
    ini = d.path / ".redun" / "redun.ini"
    ini.write_text("# written by the test\n[scheduler]\nignore_warnings = namespace\n")
    init = ["init", *([url] if url else []), "--redun"]
    if storage_options:
        d.env["OBJSTORE_STORAGE_OPTIONS"] = storage_options  # for `objstore init` only
        d.objstore(*init)
        del d.env["OBJSTORE_STORAGE_OPTIONS"]
        ini.write_text(ini.read_text().replace("[backend]\n", f"[backend]\nobjstore_storage_options = {storage_options}\n"))
    else:
        d.objstore(*init)
    _replay(d)
    return d


def _replay(d: Dir) -> None:
    for args in RUNS:
        d.redun(*args, check=None)
    for args in TAGS:
        d.redun(*args)


def record(base: Path, **objstore: str | None) -> Recorded:
    return Recorded(record_sqlite(base), record_objstore(base, **objstore))  # type: ignore[arg-type]


# -- comparing what two backends print ----------------------------------------------------------

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_RULES = [
    (re.compile(_UUID), "<uuid>"),
    (re.compile(r"\b(Exec|Job|First Job) [0-9a-f]{8}\b"), r"\1 <id>"),
    (re.compile(r"Execution:<uuid>"), "Execution:<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?(\+00:00)?"), "<time>"),
    (re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d"), "<time>"),
    (re.compile(r"\b\d+:\d\d:\d\d\.\d\d\b"), "<duration>"),
    (re.compile(r"redun\.version=[0-9.]+"), "redun.version=<v>"),
    (re.compile(r"user=\w+"), "user=<user>"),
]


_HEX = re.compile(r"\b[0-9a-f]{8}(?:[0-9a-f]{32})?\b")


def normalized(text: str, *, number: bool = True) -> list[str]:
    """Lines with ids of executions and jobs, times and durations replaced, trailing spaces gone.
    Hashes are numbered in order of first appearance (``<h1>``...): a File's hash covers its
    mtime, so the two copies' Files (and the call nodes and lists holding them) hash apart, but
    the same hash must still stand in the same places."""
    out = []
    numbers: dict[str, str] = {}

    def renumber(found: re.Match) -> str:
        return numbers.setdefault(found.group(0)[:8], f"<h{len(numbers) + 1}>")

    for line in text.splitlines():
        for pattern, repl in _RULES:
            line = pattern.sub(repl, line)
        line = _HEX.sub(renumber if number else (lambda found: "<h>"), line)
        out.append(line.rstrip())
    while out and not out[-1]:
        out.pop()
    return out
