"""Helpers shared by the maintenance tests (fsck, gc, repack, db, compaction, value store):
the CLI in a subprocess, a redun workflow run by `redun run`, and small repositories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from objstore import hashing, model
from objstore.repo import Repository, default_index_dir

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKFLOW = '''
from redun import task
redun_namespace = "maintwf"

@task()
def add(a: int, b: int) -> int:
    return a + b

@task()
def blob(n: int) -> bytes:
    return bytes(range(256)) * n

@task()
def size(b: bytes) -> int:
    return len(b)

@task()
def fan(n: int) -> list:
    return [add(i, 1) for i in range(n)]

@task()
def main(x: int = 1, n: int = 8, big: int = 64) -> list:
    return [add(add(x, 2), 3), fan(n), size(blob(big))]
'''


def make_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBJSTORE_") and k != "XDG_CACHE_HOME"}
    env["HOME"] = str(home)
    env.update(extra)
    return env


def cli(args, cwd, env, *, check=None, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "objstore.cli", *args], cwd=cwd, env=env,
                          capture_output=True, timeout=timeout)  # fmt: skip
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout.decode()[-3000:], proc.stderr.decode()[-3000:])
    return proc


_KILLED_MID_UPLOAD = """
import json, os, sys
import s3fs
from objstore.store import open_blobs
options = json.loads(os.environ["OBJSTORE_STORAGE_OPTIONS"])
fs = s3fs.S3FileSystem(**options, default_block_size=5 * 2**20, skip_instance_cache=True)
def produce(f):
    f.write(os.urandom(6 * 2**20))  # past one part: the upload has started, with a part stored
    f.flush()
    os._exit(9)  # the worker is killed before it completes (or aborts) the upload
open_blobs(fs, sys.argv[1]).create_from(sys.argv[2], produce)
"""


def killed_mid_upload(root: str, key: str, env) -> None:
    """A writer killed while uploading ``key`` under the S3 path ``root`` through objstore's own
    streaming write (``$OBJSTORE_STORAGE_OPTIONS`` reaches the bucket): an unfinished multipart
    upload with one part stored."""
    killed = subprocess.run([sys.executable, "-c", _KILLED_MID_UPLOAD, root, key], env=env, capture_output=True)
    assert killed.returncode == 9, killed.stderr.decode()[-2000:]


def out(proc) -> str:
    return proc.stdout.decode()


def one_line_error(proc, code: int, match: str) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    err = proc.stderr.decode()
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("objstore: error: ") and match in last, err
    return last


def redun_run(cwd: Path, env, *args: str, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "redun"), "run", "wf.py", "main", *args], cwd=cwd, env=env,
                          capture_output=True, timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc


def redun_project(tmp_path: Path, env) -> Path:
    """A directory whose redun records into ./.objstore (objstore init --redun), with wf.py."""
    cli(["init", "--redun"], tmp_path, env, check=0)
    (tmp_path / "wf.py").write_text(WORKFLOW)
    return tmp_path / ".objstore"


def ran(proc) -> list[str]:
    """The tasks a redun run executed (not cached)."""
    return [line.split("Job", 1)[1].split()[1].split("(")[0] for line in proc.stderr.decode().splitlines()
            if "[redun] Run    Job" in line]  # fmt: skip


def cached(proc) -> int:
    return proc.stderr.decode().count("[redun] Cached Job")


def library(url: str, env, **kw) -> Repository:
    """The repository as the CLI opens it (same default index)."""
    return Repository.open(url, index_dir=default_index_dir(url, Path(env["HOME"]) / ".cache" / "objstore"), **kw)


def value(text: str, size: int = 0) -> tuple[str, str, bytes]:
    data = text.encode() + b"\0" * size
    return hashing.hash_text("value:" + text), "value", model.value.encode("builtins.bytes", "pickle", data)


def populate(repo: Repository, flushes: int = 6, per: int = 4, prefix: str = "v") -> list[tuple[str, str, bytes]]:
    """Values over several flushes (packed), a loose one and eval heads that change."""
    made = []
    for i in range(flushes):
        for j in range(per):
            item = value(f"{prefix}{i}-{j}")
            repo.add(*item)
            made.append(item)
        repo.set_eval_head(hashing.hash_text(f"eval {prefix}{i % 3}"), made[-1][0])
        repo.flush()
    lone = value(f"{prefix}-alone")
    repo.add(*lone)
    repo.flush()
    made.append(lone)
    return made


def snapshot(repo: Repository, tables=None) -> dict[str, list]:
    return {t: sorted(repo.index.scan(t)) for t in (tables or model.TABLES)}


def fsck_json(cwd, env, *args: str) -> tuple[int, dict]:
    proc = cli(["fsck", "--json", *args], cwd, env)
    assert "Traceback" not in proc.stderr.decode(), proc.stderr.decode()
    return proc.returncode, json.loads(proc.stdout)


def problems(doc: dict, *, what: str | None = None, severity: str | None = None) -> list[dict]:
    return [p for p in doc["problems"] if (what is None or p["what"] == what) and (severity is None or p["severity"] == severity)]
