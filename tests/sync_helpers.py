"""What the sync, interchange and migrate tests share: the CLI in a subprocess, a redun workflow
that writes every kind of record, and redun runs that say which task bodies actually ran."""

from __future__ import annotations

import configparser
import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

BIN = Path(sys.executable).parent
OBJSTORE = BIN / "objstore"
REDUN = BIN / "redun"

WORKFLOW = '''\
"""A workflow touching every kind of record objstore syncs: a fan-out, a value big enough for
redun's value store, a File, a caught failure, tags, and a Handle advanced twice."""
import os
from redun import File, Handle, apply_tags, catch, task

redun_namespace = "syncwf"


def ran(name):
    # Which task bodies ran: a cached job leaves no line here.
    with open(os.environ.get("SYNCWF_LOG", "ran.log"), "a") as out:
        out.write(name + "\\n")


class Ledger(Handle):
    def __init__(self, name, path):
        self.path = path


@task
def inc(x: int) -> int:
    ran("inc")
    return x + 1


@task
def fan(n: int) -> list:
    ran("fan")
    return [inc(i) for i in range(n)]


@task
def big(k: int) -> str:
    ran("big")
    return f"{k}:" + "x" * (3000 * (k + 1))


@task
def write_file(path: str, content: str) -> File:
    ran("write_file")
    f = File(path)
    f.write(content)
    return f


@task
def fail(x: int) -> int:
    ran("fail")
    raise ValueError(f"boom {x}")


@task
def recover(error: Exception) -> int:
    ran("recover")
    return -1


@task(tags=[("team", "core")])
def tagged(x: int):
    ran("tagged")
    return apply_tags(x * 10, [("stage", "demo")])


@task
def ledger_add(ledger: Ledger, item: str) -> Ledger:
    ran("ledger_add:" + item)
    with open(ledger.path, "a") as out:
        out.write(item + "\\n")
    return ledger


@task
def ledger_pipeline(second: str) -> Ledger:
    led = Ledger("ledger", os.path.abspath("ledger.txt"))
    return ledger_add(ledger_add(led, "first"), second)


@task
def main(n: int = 5, second: str = "b") -> list:
    ran("main")
    return [fan(n), big(1), write_file("out.txt", "hello"), catch(fail(3), ValueError, recover),
            tagged(7), ledger_pipeline(second)]


@task
def compute(n: int = 5, second: str = "b") -> list:
    # Another workflow: no File of the working directory (a File is only valid where it is).
    ran("compute")
    return [fan(n), big(2), tagged(8), ledger_pipeline(second)]
'''


def clean_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBJSTORE_", "REDUN_")) and k != "XDG_CACHE_HOME"}
    env["HOME"] = str(home)
    return env


def run(args, cwd, env, *, check=None, stdin=None, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(OBJSTORE), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          input=stdin, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout.decode()[-2000:], proc.stderr.decode()[-3000:])
    return proc


def assert_one_line_error(proc, code: int, *needles: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, proc.stdout, err)
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("objstore: error: "), err
    for needle in needles:
        assert needle in last, (needle, last)
    return last


def write_workflow(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "wf.py"
    path.write_text(WORKFLOW)
    return path


def redun_ini(config_dir: Path, *, objstore_url: str | None = None, sqlite: str | None = None,
              value_store: str | None = None) -> Path:
    """A redun config dir recording into objstore (``objstore_url``) or a sqlite file."""
    config_dir.mkdir(parents=True, exist_ok=True)
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser["scheduler"] = {"ignore_warnings": "namespace"}
    if objstore_url:
        parser["scheduler"]["setup_scheduler"] = "objstore.redun::setup_scheduler"
        parser["backend"] = {"objstore_url": objstore_url}
    else:
        parser["backend"] = {"db_uri": sqlite or "sqlite:///redun.db"}
        if value_store:
            parser["backend"]["value_store_path"] = value_store
            parser["backend"]["value_store_min_size"] = "1024"
    with open(config_dir / "redun.ini", "w") as out:
        parser.write(out)
    return config_dir


def redun_run(workdir: Path, config_dir: Path, env, *args: str, task: str = "main") -> list[str]:
    """`redun -c CONFIG run wf.py TASK ARGS` in ``workdir``; the task bodies that ran."""
    log = workdir / f"ran-{uuid.uuid4().hex[:8]}.log"
    proc = subprocess.run([str(REDUN), "-c", str(config_dir), "run", "wf.py", task, *args], cwd=workdir,
                          env=dict(env, SYNCWF_LOG=str(log)), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return log.read_text().split() if log.exists() else []


def load_workflow(path: Path):
    """The workflow as `redun run wf.py` imports it: module ``wf``, so the Handles it pickled
    in a subprocess unpickle here."""
    spec = importlib.util.spec_from_file_location("wf", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["wf"] = module  # redun reads redun_namespace through sys.modules
    spec.loader.exec_module(module)
    return module


def scheduler_run(module, backend, log: Path, **kwargs) -> list[str]:
    """A real redun Scheduler run in this process; the task bodies that ran."""
    from redun import Scheduler
    from redun.config import Config

    os.environ["SYNCWF_LOG"] = str(log)
    try:
        log.unlink(missing_ok=True)
        Scheduler(config=Config({"scheduler": {"ignore_warnings": "namespace"}}), backend=backend).run(
            module.main(**kwargs))
    finally:
        del os.environ["SYNCWF_LOG"]
    return log.read_text().split() if log.exists() else []


FIRST_RUN = {"main", "fan", "big", "write_file", "fail", "recover", "tagged", "ledger_add:first"}
