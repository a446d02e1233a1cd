"""objstore export / import, both streams, against redun's own export/import CLI.

* objstore's stream carries the cache: export -> import into an empty repository -> a redun
  run there executes nothing; exporting the import gives the same bytes back.
* redun's stream: `objstore export --redun | redun import` loads into a real redun sqlite
  database record for record, and `redun export | objstore import` works (redun's own export
  then equals objstore's of the imported records).
* Every bad input stops the import with its line number, one line, exit 1, and leaves what
  was imported before it consistent.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from sync_helpers import (
    FIRST_RUN,
    REDUN,
    assert_one_line_error,
    clean_env,
    redun_ini,
    redun_run,
    run,
    write_workflow,
)

from objstore import hashing, model
from objstore.format import FORMAT_VERSION
from objstore.repo import Repository


@pytest.fixture
def env(tmp_path):
    return clean_env(tmp_path / "home")


@pytest.fixture
def recorded(tmp_path, env):
    """A local repository holding two redun runs of the workflow (different arguments)."""
    work = tmp_path / "work"
    write_workflow(work)
    repo = tmp_path / "repo"
    run(["init", repo], tmp_path, env, check=0)
    config = redun_ini(work / ".redun", objstore_url=str(repo))
    assert set(redun_run(work, config, env)) >= FIRST_RUN
    redun_run(work, config, env, "--n", "3", "--second", "c")
    return {"work": work, "repo": repo, "config": config}


def records(lines: str | bytes) -> list[dict]:
    return [json.loads(line) for line in (lines.decode() if isinstance(lines, bytes) else lines).splitlines() if line.strip()]


def comparable(recs: list[dict]) -> set[str]:
    """redun export records as a set; children sorted (redun's export prints CallNode children
    by hash, not in call order, and Job children in query order)."""
    out = set()
    for r in recs:
        r = dict(r)
        if r["_type"] in ("CallNode", "Job"):
            r["children"] = sorted(r["children"])
        out.add(json.dumps(r, sort_keys=True))
    return out


def redun_db_dir(path: Path) -> Path:
    """A redun config dir on a sqlite file (redun's own backend), schema made by redun itself."""
    config = redun_ini(path, sqlite="sqlite:///redun.db")
    subprocess.run([str(REDUN), "-c", str(config), "init"], capture_output=True, check=True, timeout=300)
    return config


def redun_cli(config: Path, *args: str, stdin: bytes | None = None, cwd: Path | None = None) -> bytes:
    proc = subprocess.run([str(REDUN), "-c", str(config), *args], input=stdin, capture_output=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc.stdout


def test_full_stream_carries_the_cache_and_round_trips(recorded, tmp_path, env):
    repo = recorded["repo"]
    stream = run(["--repo", repo, "export"], tmp_path, env, check=0).stdout
    lines = records(stream)
    assert lines[0] == {"_format": "objstore-export", "_version": 1, "_type": "header", "repo_format": list(FORMAT_VERSION)}
    assert lines[-1] == {"_type": "end", "count": len(lines) - 2}
    kinds = {line["kind"] for line in lines if line["_type"] == "object"}
    assert {"value", "call", "job", "exec", "tag", "handle", "handle_edge"} <= kinds
    assert sum(line["_type"] == "eval" for line in lines) > 10
    assert any(line["_type"] == "handle_state" for line in lines)  # the second run rolled "b" back
    calls = [line["doc"] for line in lines if line.get("kind") == "call"]
    assert all("subtree_tasks" in c for c in calls) and any(c["subtree_tasks"] for c in calls)

    other = tmp_path / "other"
    run(["init", other], tmp_path, env, check=0)
    (tmp_path / "stream.jsonl").write_bytes(stream)
    out = run(["--repo", other, "import", "stream.jsonl"], tmp_path, env, check=0).stdout.decode()
    assert "(objstore stream)" in out and "0 already present" in out
    again = run(["--repo", other, "import", "-"], tmp_path, env, check=0, stdin=stream).stdout.decode()
    assert again.startswith("imported 0 objects") and "eval heads" in again  # idempotent
    assert run(["--repo", other, "export"], tmp_path, env, check=0).stdout == stream  # the same bytes
    work = recorded["work"]
    other_config = redun_ini(work / ".redun-other", objstore_url=str(other))
    assert redun_run(work, other_config, env, "--n", "3", "--second", "c") == []  # the cache came along
    assert redun_run(work, other_config, env) == ["ledger_add:b"]  # and so did the rollback of "b"


def test_export_of_given_roots_carries_their_cache(recorded, tmp_path, env):
    repo = recorded["repo"]
    executions = json.loads(run(["--repo", repo, "log", "--json"], tmp_path, env, check=0).stdout)
    newest = executions[0]["id"]  # the `--n 3 --second c` run
    run(["--repo", repo, "export", newest[:8], "-o", "part.jsonl"], tmp_path, env, check=0)
    part = records((tmp_path / "part.jsonl").read_text())
    ids = {line["id"] for line in part if line["_type"] == "object"}
    assert newest in ids and executions[1]["id"] not in ids
    other = tmp_path / "other"
    run(["init", other], tmp_path, env, check=0)
    run(["--repo", other, "import", "part.jsonl"], tmp_path, env, check=0)
    work = recorded["work"]
    # Everything is cached but the caught failure: redun cached that branch through its `catch`
    # scheduler task, whose eval head no record of this execution names (a whole export has it).
    assert redun_run(work, redun_ini(work / ".redun-o", objstore_url=str(other)), env, "--n", "3", "--second", "c") == ["fail"]
    redun_part = records(run(["--repo", repo, "export", "--redun", newest], tmp_path, env, check=0).stdout)
    assert {r["_type"] for r in redun_part} == {"Execution", "Job", "CallNode", "Value", "Tag"}
    assert redun_part[0] == {"_version": 1, "_type": "Execution", "id": newest, "args": redun_part[0]["args"],
                             "job_id": redun_part[0]["job_id"]}


def test_objstore_export_redun_loads_into_redun_record_for_record(recorded, tmp_path, env):
    ours = run(["--repo", recorded["repo"], "export", "--redun"], tmp_path, env, check=0).stdout
    config = redun_db_dir(tmp_path / "redun-db")
    redun_cli(config, "import", stdin=ours)
    theirs = redun_cli(config, "export")
    assert comparable(records(theirs)) == comparable(records(ours))
    assert len(records(ours)) == len(records(theirs)) > 50


def test_redun_export_imports_into_objstore(tmp_path, env):
    work = tmp_path / "work"
    write_workflow(work)
    config = redun_db_dir(work / ".redun")
    assert set(redun_run(work, config, env)) >= FIRST_RUN  # redun's own sqlite backend
    theirs = redun_cli(config, "export", cwd=work)
    repo = tmp_path / "repo"
    run(["init", repo], tmp_path, env, check=0)
    proc = subprocess.run(f"{REDUN} -c {config} export | {run.__globals__['OBJSTORE']} --repo {repo} import",
                          shell=True, cwd=work, env=env, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "(redun stream)" in proc.stdout.decode()
    ours = run(["--repo", repo, "export", "--redun"], tmp_path, env, check=0).stdout
    assert comparable(records(ours)) == comparable(records(theirs))
    log = json.loads(run(["--repo", repo, "log", "--json"], tmp_path, env, check=0).stdout)
    assert len(log) == 1 and log[0]["start_time"]  # the execution's time came from its root job
    # redun's stream carries no cache: a run after importing it recomputes (redun's limit).
    assert "main" in redun_run(work, redun_ini(work / ".redun-os", objstore_url=str(repo)), env)


def _stream(tmp_path, env) -> list[str]:
    repo = tmp_path / "src"
    with Repository.init(str(repo), index_dir=tmp_path / "ix-src") as r:
        for i in range(6):
            payload = model.value.encode("builtins.int", "pickle", str(i).encode())
            r.add(hashing.hash_text(f"v{i}"), "value", payload)
        tag = model.tag.KIND.encode("Value", hashing.hash_text("v0"), "env", "prod", [])
        r.add(model.tag.tag_hash_of(json.loads(tag)), "tag", tag)
        r.set_eval_head(hashing.hash_text("e"), hashing.hash_text("v1"))
    return run(["--repo", repo, "export"], tmp_path, env, check=0).stdout.decode().splitlines(keepends=True)


def _import(tmp_path, env, text: str | bytes, name: str):
    target = tmp_path / name
    run(["init", target], tmp_path, env, check=0)
    (tmp_path / f"{name}.jsonl").write_bytes(text.encode() if isinstance(text, str) else text)
    return target, run(["--repo", target, "import", f"{name}.jsonl"], tmp_path, env)


def test_bad_streams_stop_with_their_line_number(tmp_path, env):
    lines = _stream(tmp_path, env)
    assert len(lines) == 10  # header, 6 values and a tag (by id), an eval head, the end
    tag_at = next(i for i, line in enumerate(lines) if '"kind":"tag"' in line)
    lines.append(lines.pop(tag_at))  # put the tag last among the objects (line 8)
    lines[7:] = [lines[9], lines[7], lines[8]]
    assert '"kind":"tag"' in lines[7] and '"_type":"eval"' in lines[8]
    wrong_tag = json.loads(lines[7])
    wrong_tag["doc"]["value"] = "staging"  # the id no longer matches its content
    newer = json.dumps({**json.loads(lines[0]), "_version": 2}) + "\n"
    redun_rec = json.dumps({"_version": 1, "_type": "Tag", "tag_hash": "0" * 40}) + "\n"
    # name: (stream, bad line, message, objects imported before it, eval heads imported)
    cases = {
        "cut-mid-line": ("".join(lines)[: len("".join(lines[:4])) + 30], 5, "not valid JSON", 3, 0),
        "cut-at-a-line": ("".join(lines[:9]), 10, "ends without its end line", 7, 1),
        "other-format": ("".join(lines[:3]) + redun_rec + "".join(lines[3:]), 4, "not a line of an objstore export", 2, 0),
        "id-mismatch": ("".join(lines[:7]) + json.dumps(wrong_tag) + "\n" + "".join(lines[8:]), 8, "tag hash does not match", 6, 0),
        "newer": (newer + "".join(lines[1:]), 1, "export stream version 2 is newer than this objstore reads (1)", 0, 0),
        "not-json-at-all": ("hello\n", 1, "not valid JSON", 0, 0),
        "neither-stream": ('{"a": 1}\n', 1, "neither an objstore export", 0, 0),
        "bad-base64": ("".join(lines[:2]) + lines[2].replace('"data":"', '"data":"!!') + "".join(lines[3:]), 3, "not valid base64", 1, 0),
    }
    for name, (text, line, message, objects, heads) in cases.items():
        target, proc = _import(tmp_path, env, text, name)
        assert_one_line_error(proc, 1, f"{name}.jsonl, line {line}: ", message)
        # What came before the bad line is in, consistently: a fresh index built from the
        # journal alone lists it and reads every object; nothing from the bad line or after.
        with Repository.open(str(target), index_dir=tmp_path / f"ix-{name}") as repo:
            present = [k for k, _ in repo.scan("objects")]
            assert len(present) == objects, (name, present)
            assert all(repo.get(i) for i in present)
            assert len(list(repo.scan("evals"))) == heads, name
    target, proc = _import(tmp_path, env, b"\xff\xfe{}\n", "latin")
    assert_one_line_error(proc, 1, "latin.jsonl, line 1: not UTF-8 text")
    target, proc = _import(tmp_path, env, "", "empty")
    assert proc.returncode == 0 and b"imported 0 objects" in proc.stdout


def test_bad_redun_records_stop_with_their_line_number(tmp_path, env):
    value_hash = hashing.hash_text("v")
    good_value = {"_version": 1, "_type": "Value", "value_hash": value_hash, "type": "builtins.int",
                  "format": "application/python-pickle", "data": "gAVLAS4=", "subvalues": [], "subtype": None}
    tag = {"_version": 1, "_type": "Tag", "tag_hash": "1" * 40, "entity_type": "Value", "entity_id": value_hash,
           "key": "env", "value": "prod", "parents": []}
    lines = [json.dumps(good_value) + "\n"]
    cases = {
        "tag-id": (lines + [json.dumps(tag) + "\n"], 2, "tag hash does not match"),
        "unknown-type": (lines + [json.dumps({"_version": 1, "_type": "Blob"}) + "\n"], 2, "unknown redun record _type 'Blob'"),
        "old-version": (lines + [json.dumps({**good_value, "_version": 0}) + "\n"], 2, "unsupported redun record version 0"),
        "missing-field": (lines + [json.dumps({k: v for k, v in good_value.items() if k != "format"}) + "\n"], 2, "without field 'format'"),
        "objstore-line": (lines + ['{"_type":"eval","eval_hash":"' + "2" * 40 + '"}\n'], 2, "unsupported redun record version None"),
        "bad-id": (lines + [json.dumps({**good_value, "value_hash": "../../etc"}) + "\n"], 2, "not"),
    }
    for name, (text, line, message) in cases.items():
        target, proc = _import(tmp_path, env, "".join(text), name)
        assert_one_line_error(proc, 1, f"{name}.jsonl, line {line}: ", message)
        with Repository.open(str(target), index_dir=tmp_path / f"ix-{name}") as repo:
            assert [k for k, _ in repo.scan("objects")] == [value_hash]  # line 1 is in, nothing else


def test_export_to_a_file_and_help(recorded, tmp_path, env):
    repo = recorded["repo"]
    out = run(["--repo", repo, "export", "--redun", "-o", "x.jsonl"], tmp_path, env, check=0)
    assert out.stdout == b"" and b"exported" in out.stderr
    assert records((tmp_path / "x.jsonl").read_text())[0]["_type"] == "Execution"
    assert not list(tmp_path.glob(".x.jsonl*"))  # no temp file left behind
    assert_one_line_error(run(["--repo", repo, "export", "zzzz"], tmp_path, env), 1, "zzzz")
    assert_one_line_error(run(["--repo", repo, "export", "-o", "nodir/x.jsonl"], tmp_path, env), 2, "cannot write")
    assert_one_line_error(run(["--repo", repo, "import", "nofile.jsonl"], tmp_path, env), 2, "cannot read nofile.jsonl")
    text = run(["export", "--help"], tmp_path, env, check=0).stdout.decode()
    assert "keeps its cache" in text and "redun import" in text and "recomputes" in text


def test_export_into_a_fifo_or_through_a_symlink_leaves_them_what_they_are(recorded, tmp_path, env):
    """`export -o /dev/null` as root once renamed a temp file over /dev/null: a target that is not
    a regular file (a device, a FIFO, a process substitution) is written into, never replaced,
    and a symlinked target keeps its link."""
    repo = recorded["repo"]
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    run(["--repo", repo, "export", "--redun", "-o", str(fifo)], tmp_path, env, check=0)
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO, not a file put in its place
    assert records(got[0].decode())[0]["_type"] == "Execution"
    assert not list(tmp_path.glob(".pipe*"))
    (tmp_path / "real.jsonl").write_text("old")
    (tmp_path / "link.jsonl").symlink_to("real.jsonl")
    run(["--repo", repo, "export", "--redun", "-o", "link.jsonl"], tmp_path, env, check=0)
    assert (tmp_path / "link.jsonl").is_symlink()
    assert records((tmp_path / "real.jsonl").read_text())[0]["_type"] == "Execution"
