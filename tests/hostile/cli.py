"""objstore's CLI for the hostile corpus: every command in a process of its own, cheaply.

A `python -m objstore.cli` start costs most of a second on this shared machine, and the corpus
runs a few hundred commands; so a small server process imports objstore's command modules
once and forks a child per command. The child is what `python -m objstore.cli ARGS` is: it
chdirs, takes the command's environment, gets its own stdin/stdout/stderr files, and runs
objstore/cli/__main__.py by runpy (an uncaught exception prints its traceback and exits 1, as
the interpreter does). Nothing of objstore's runs in the server itself, so no LMDB environment,
event loop or thread crosses a fork.

``HOSTILE_CLI=subprocess`` runs every command as a plain `python -m objstore.cli` instead (the
same results, slower: the check that the fork is not hiding anything).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

_SERVER = r"""
import json, os, runpy, sys, traceback
import objstore.cli
objstore.cli.build_parser()  # imports every command module
import fsspec, lmdb, zstandard  # noqa: F401  (what every command needs first)
import objstore.repo, objstore.backend, objstore.query, objstore.maint, objstore.sync  # noqa: F401
proto = os.fdopen(int(sys.argv[1]), "w")
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(req["cwd"])
            os.environ.clear(); os.environ.update(req["env"])
            for fd, name, mode in ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY), (2, "stderr", os.O_WRONLY)):
                f = os.open(req[name], mode)
                os.dup2(f, fd); os.close(f)
            sys.stdin = open(0, "r", closefd=False)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False, buffering=1)
            sys.argv = ["objstore", *req["argv"]]
            try:
                runpy.run_module("objstore.cli", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush(); sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    proto.write(json.dumps(os.waitstatus_to_exitcode(status)) + "\n"); proto.flush()
"""


class CLI:
    """``cli.run(argv, cwd=, env=) -> CompletedProcess`` (text stdout/stderr), one child each."""

    def __init__(self) -> None:
        self.plain = os.environ.get("HOSTILE_CLI") == "subprocess"
        self._lock = threading.Lock()
        self._tmp = tempfile.mkdtemp(prefix="hostile-cli-")
        self._proc: subprocess.Popen | None = None

    def _server(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            read, write = os.pipe()
            self._proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(write)], stdin=subprocess.PIPE,
                                          pass_fds=(write,), text=True)  # fmt: skip
            os.close(write)
            self._replies = os.fdopen(read)
        return self._proc

    def run(self, argv: list[str], *, cwd: Path | str, env: dict[str, str], stdin: str = "",
            timeout: float = 120) -> subprocess.CompletedProcess:  # fmt: skip
        argv = [str(a) for a in argv]
        if self.plain:
            return subprocess.run([sys.executable, "-m", "objstore.cli", *argv], cwd=cwd, env=env, input=stdin,
                                  capture_output=True, text=True, timeout=timeout)  # fmt: skip
        with self._lock:
            files = {name: os.path.join(self._tmp, name) for name in ("stdin", "stdout", "stderr")}
            Path(files["stdin"]).write_text(stdin)
            for name in ("stdout", "stderr"):
                Path(files[name]).write_bytes(b"")
            server = self._server()
            assert server.stdin is not None
            server.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "env": env, **files}) + "\n")
            server.stdin.flush()
            reply = self._replies.readline()
            if not reply:
                raise RuntimeError("the hostile CLI server died")
            code = json.loads(reply)
            out = Path(files["stdout"]).read_text(errors="replace")
            err = Path(files["stderr"]).read_text(errors="replace")
        return subprocess.CompletedProcess(["objstore", *argv], code, out, err)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=30)


def assert_outcome(proc: subprocess.CompletedProcess, *codes: int, report: bool = False) -> str:
    """The house rule for one command: exit status in ``codes`` (0, 1 store error, 2 usage); no
    traceback; a failure ends in exactly one ``objstore: error: …`` line (never "[Errno None]"),
    and nothing else on stderr but warnings (and argparse's usage line before a usage error).
    ``report``: a command whose exit 1 means "problems found, see the report on stdout" (fsck)
    may exit 1 without an error line. Returns the error line ("" on success)."""
    err = proc.stderr
    where = f"{proc.args}: exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {err[-3000:]}"
    assert proc.returncode in codes, where
    assert "Traceback" not in err and "Traceback" not in proc.stdout, where
    assert "[Errno None]" not in err, where
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("objstore: error: ")]
    for line in lines:
        assert line.startswith(("objstore: error: ", "objstore: warning: ", "usage: ", "  ")), where
        assert not line.startswith("objstore: error: [Errno"), where
    if proc.returncode == 0 or (report and proc.returncode == 1 and not errors):
        assert not errors, where
        return ""
    assert len(errors) == 1 and lines[-1] == errors[0], where
    return errors[0]
