"""The hostile-input corpus: each case is a function that damages a copy of a real recorded
repository the way a bad disk, a half-finished copy, a careless user or an attacker would.

    base = record(tmp / "base")          # objstore init + two real redun Scheduler runs
    repo = base.copy(tmp / "case")       # a fresh copy per case
    DAMAGE["pack-bad-magic"](repo)       # break it; returns what it broke (for the test's checks)

The repository comes from `objstore init` and real runs of tests/hostile/workflow.py on
ObjstoreBackend; nothing here writes a repository file through objstore's own writers except
the journal segments that must be *valid* segments with hostile entries (built with
objstore.repo.journal.encode, as a buggy or malicious writer would). Static bad files that are
worth keeping as bytes live in tests/hostile/files/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from damage import object_span

from objstore import codec, pack
from objstore.repo import journal

FILES = Path(__file__).resolve().parent / "files"
CONFIG = {"scheduler": {"ignore_warnings": "namespace"}}


@dataclass
class Repo:
    """A recorded repository (a directory) and what a test needs to know about it."""

    path: Path
    main_exec: str = ""  # the execution of main(4)
    handle_exec: str = ""  # the execution of with_handle(1)
    main_result: str = ""  # the value hash of main(4)'s result (14)
    main_eval: str = ""  # the eval hash whose head is main_result
    call_node: str = ""  # a call node (of total) for wrong-kind damage
    handle_ref: str = ""  # refs/... of the rolled-back handle, relative to the repository
    objects: dict[str, str] = field(default_factory=dict)  # id -> kind, from the packs' tocs
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.path)

    def copy(self, dest: Path) -> Repo:
        shutil.copytree(self.path, dest, symlinks=True)
        return Repo(dest, self.main_exec, self.handle_exec, self.main_result, self.main_eval,
                    self.call_node, self.handle_ref, dict(self.objects), dict(self.extra))  # fmt: skip

    def segments(self) -> list[Path]:
        return sorted((self.path / "journal").iterdir())

    def packs(self) -> list[Path]:
        d = self.path / "objects" / "pack"
        return sorted(d.iterdir()) if d.is_dir() else []

    def pack_of(self, object_id: str) -> Path:
        path, _, _ = object_span(str(self.path), object_id)
        return Path(path)


def record(path: Path, *, loose: bool = False) -> Repo:
    """`objstore init` (and ``objstore config pack false`` for a repository of loose objects),
    then real Scheduler runs: main(4), with_handle(1), and a rolled-back handle (its ref file)."""
    from redun import Scheduler
    from redun.config import Config

    from hostile import workflow as wf
    from objstore.redun import ObjstoreBackend

    env = dict(os.environ, HOME=str(path.parent / f"home-{path.name}"))
    cli = [sys.executable, "-m", "objstore.cli"]
    subprocess.run([*cli, "init", str(path)], check=True, capture_output=True, env=env)
    if loose:
        subprocess.run([*cli, "--repo", str(path), "config", "pack", "false"], check=True, capture_output=True, env=env)
    index = path.parent / f"index-{path.name}"
    backend = ObjstoreBackend(str(path), index_dir=str(index))
    scheduler = Scheduler(config=Config(CONFIG), backend=backend)
    assert scheduler.run(wf.main(4)) == wf.expected(4)
    scheduler.run(wf.with_handle(1))
    rolled = wf.Counter("rolled", start=2)
    scheduler.run(wf.bump(rolled, 2))
    backend.rollback_handle(rolled)
    backend.flush()
    repo = backend.repo
    rec = Repo(path)
    result = backend.type_registry.get_hash(wf.expected(4))
    rec.main_result = result
    rec.main_eval = next(k for k, v in repo.index.scan("evals") if v == result)
    backend.close()
    rec.objects = _all_objects(path)
    rec.call_node = next(i for i, k in rec.objects.items() if k == "call")
    jobs = [i for i, k in rec.objects.items() if k == "exec"]
    rec.main_exec, rec.handle_exec = _execs_in_order(path, jobs, env)
    refs = [p for p in (path / "refs").rglob("*") if p.is_file()]
    assert len(refs) == 1, refs
    rec.handle_ref = str(refs[0].relative_to(path))
    return rec


def _all_objects(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for p in sorted((path / "objects").rglob("*")):
        if not p.is_file():
            continue
        if p.parent.name == "pack":
            found.update((oid, kind) for oid, kind, _ in pack.parse(p.read_bytes(), name=p.name))
        else:
            oid = p.parent.name + p.name
            kind, _ = codec.decode(p.read_bytes(), object_id=oid)
            found[oid] = kind
    return found


def _execs_in_order(path: Path, exec_ids: list[str], env: dict) -> tuple[str, str]:
    out = subprocess.run([sys.executable, "-m", "objstore.cli", "--repo", str(path), "--index-dir",
                          str(path.parent / f"index-log-{path.name}"), "log", "--json"],
                         check=True, capture_output=True, text=True, env=env).stdout  # fmt: skip
    ids = [e["id"] for e in json.loads(out)]
    assert sorted(ids) == sorted(exec_ids), (ids, exec_ids)
    return ids[-1], ids[-2]  # newest first: main(4) ran first, then with_handle(1), then bump


# -- damage ------------------------------------------------------------------------------------
# Each takes the copy and returns a short description of what it broke (kept in the test's id).


def _rewrite(path: Path, edit: Callable[[bytes], bytes]) -> None:
    path.write_bytes(edit(path.read_bytes()))


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1 :]


def loose_file(repo: Repo, object_id: str) -> Path:
    return repo.path / "objects" / object_id[:2] / object_id[2:]


def loose_truncated(repo: Repo) -> str:
    _rewrite(loose_file(repo, repo.main_result), lambda d: d[: len(d) // 2])
    return repo.main_result


def loose_bit_flipped(repo: Repo) -> str:
    _rewrite(loose_file(repo, repo.main_result), lambda d: _flip(d, len(d) - 6))
    return repo.main_result


def loose_wrong_kind(repo: Repo) -> str:
    """The value's file holds another intact object (a call node): kind and id both disagree."""
    shutil.copyfile(loose_file(repo, repo.call_node), loose_file(repo, repo.main_result))
    return repo.main_result


def loose_zero_bytes(repo: Repo) -> str:
    loose_file(repo, repo.main_result).write_bytes(b"")
    return repo.main_result


def _entry_span(repo: Repo, object_id: str) -> tuple[Path, int, int]:
    path, offset, length = object_span(str(repo.path), object_id)
    return Path(path), offset, length


def pack_cut_toc(repo: Repo) -> str:
    """The pack's table of contents (at its end) cut off: its entries are all still there."""
    path, offset, length = _entry_span(repo, repo.main_result)
    data = path.read_bytes()
    last_end = max(loc.offset + loc.length for _, _, loc in pack.parse(data, name=path.name))
    path.write_bytes(data[: last_end + (len(data) - last_end) // 3])
    return repo.main_result


def pack_bad_magic(repo: Repo) -> str:
    path, _, _ = _entry_span(repo, repo.main_result)
    _rewrite(path, lambda d: b"XXXX" + d[4:])
    return repo.main_result


def pack_flipped_entry(repo: Repo) -> str:
    path, offset, length = _entry_span(repo, repo.main_result)
    _rewrite(path, lambda d: _flip(d, offset + length - 6))
    return repo.main_result


def pack_truncated(repo: Repo) -> str:
    path, offset, length = _entry_span(repo, repo.main_result)
    _rewrite(path, lambda d: d[: offset + length // 2])
    return repo.main_result


def _eval_file(repo: Repo, eval_hash: str) -> Path:
    return repo.path / "evals" / eval_hash[:2] / eval_hash[2:]


def evals_garbage(repo: Repo) -> str:
    """Head files (which only shared storage writes, and a full-scan reindex reads) that are
    not value hashes: binary noise, an empty file, a path."""
    for text, h in ((os.urandom(64), repo.main_eval), (b"", "ab" * 20), (b"../../etc/passwd", "cd" * 20)):
        f = _eval_file(repo, h)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(text)
    return repo.main_eval


MISSING_VALUE = "0123456789abcdef" * 2 + "01234567"


def evals_missing_value(repo: Repo) -> str:
    """main(4)'s head file names a value that is stored nowhere."""
    f = _eval_file(repo, repo.main_eval)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(MISSING_VALUE + "\n")
    return repo.main_eval


def _new_segment(repo: Repo, data: bytes, stamp: str = "20991231T235959.000000Z") -> Path:
    """A segment named as a writer names one, dated after every real one (read last)."""
    path = repo.path / "journal" / f"{stamp}-{'e' * 16}"
    path.write_bytes(data)
    return path


def journal_garbage(repo: Repo) -> str:
    _new_segment(repo, os.urandom(300))
    _new_segment(repo, b"", stamp="20991231T235958.000000Z")
    _new_segment(repo, codec.encode("journal", b"{not json"), stamp="20991231T235957.000000Z")
    return "journal/20991231T235959.000000Z-eeeeeeeeeeeeeeee"


def journal_truncated(repo: Repo) -> str:
    """The first segment (main(4)'s records) cut halfway: a copy that stopped short."""
    first = repo.segments()[0]
    _rewrite(first, lambda d: d[: len(d) // 2])
    return f"journal/{first.name}"


def journal_missing_objects(repo: Repo) -> str:
    """A well-formed segment listing objects that were never written, and an eval head for
    main(4) that names a value stored nowhere: a writer that died before its pack landed."""
    ghost = "f" * 40
    entries = [("put", "evals", repo.main_eval, MISSING_VALUE), ("put", "objects", ghost, "value")]
    _new_segment(repo, journal.encode("e" * 16, [[ghost, "value"], [MISSING_VALUE, "value"]], entries))
    return repo.main_eval


def journal_bad_ids(repo: Repo) -> str:
    """A well-formed segment whose ids are paths, NULs, overlong strings and non-strings."""
    bad = ["../../etc/passwd", "/etc/passwd", "ab\0cd" * 8, "a" * 5000, "..", 7, None]
    listing = [[b, "value"] for b in bad]
    entries = [("put", "evals", b, repo.main_result) for b in bad] + [("put", "evals", repo.main_eval, b) for b in bad]
    entries += [("bogus-op", "evals", "x", "y"), ("put", "no-such-table", "x", "y"), "not an entry", [1, 2]]
    doc = {"format": journal.FORMAT, "version": 1, "writer": "e" * 16, "objects": listing, "entries": entries}
    _new_segment(repo, codec.encode(journal.KIND, json.dumps(doc).encode()))
    return repo.main_eval


def ref_torn(repo: Repo) -> str:
    _rewrite(repo.path / repo.handle_ref, lambda d: d[: len(d) // 2])
    return repo.handle_ref


def ref_garbage(repo: Repo) -> str:
    (repo.path / repo.handle_ref).write_bytes(b"\x00\xff garbage {" + os.urandom(40))
    return repo.handle_ref


def _format_file(repo: Repo) -> Path:
    return repo.path / "objstore.json"


def format_garbage(repo: Repo) -> str:
    _format_file(repo).write_bytes((FILES / "objstore.json.garbage").read_bytes())
    return "objstore.json"


def format_missing(repo: Repo) -> str:
    _format_file(repo).unlink()
    return "objstore.json"


def format_newer(repo: Repo) -> str:
    doc = json.loads(_format_file(repo).read_text())
    _format_file(repo).write_text(json.dumps(dict(doc, version=[99, 0])))
    return "objstore.json"


WRONG_TYPES: dict[str, dict] = json.loads((FILES / "objstore.json.wrong-types").read_text())


def format_wrong_type(name: str) -> Callable[[Repo], str]:
    """One field of objstore.json with the right name and a wrong type or range
    (files/objstore.json.wrong-types)."""

    def damage(repo: Repo) -> str:
        doc = json.loads(_format_file(repo).read_text())
        _format_file(repo).write_text(json.dumps(doc | WRONG_TYPES[name]))
        return "objstore.json"

    return damage


def format_not_an_object(repo: Repo) -> str:
    _format_file(repo).write_text('["objstore", [3, 0]]')
    return "objstore.json"


def foreign_files(repo: Repo) -> str:
    """Stray files everywhere a repository has files: editors' backups, a README, a file named
    like a pack or an id that is neither, a directory where a file belongs."""
    stray = {
        "NOTES.txt": b"left here by a person\n",
        ".DS_Store": os.urandom(32),
        "objects/README": b"hello\n",
        "objects/zz/not-an-id": b"x",
        f"objects/{repo.main_result[:2]}/{repo.main_result[2:]}.orig": b"backup",
        "objects/pack/README.txt": b"hi",
        f"objects/pack/{'9' * 40}.pack": (FILES / "not-a-pack.pack").read_bytes(),
        "objects/pack/broken.pack": b"PACK",
        "journal/README": b"hi",
        "journal/20991231T235959.000000Z-notahexwriter": b"x",
        "journal/.tmp-partial": b"x",
        "refs/README": b"hi",
        "refs/handles/.hidden": b"x",
        "evals/README": b"hi",
        "evals/zz/not-an-id": b"x",
    }
    for rel, data in stray.items():
        p = repo.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (repo.path / "objects" / "ff" / ("f" * 38)).mkdir(parents=True)  # a directory named as an object
    (repo.path / "journal" / "20991231T235959.000000Z-abcdefabcdefabcd").mkdir()  # ... and as a segment
    return ",".join(sorted(stray))


DAMAGE: dict[str, Callable[[Repo], str]] = {
    "loose-truncated": loose_truncated,
    "loose-bit-flipped": loose_bit_flipped,
    "loose-wrong-kind": loose_wrong_kind,
    "loose-zero-bytes": loose_zero_bytes,
    "pack-cut-toc": pack_cut_toc,
    "pack-bad-magic": pack_bad_magic,
    "pack-flipped-entry": pack_flipped_entry,
    "pack-truncated": pack_truncated,
    "evals-garbage": evals_garbage,
    "evals-missing-value": evals_missing_value,
    "journal-garbage": journal_garbage,
    "journal-truncated": journal_truncated,
    "journal-missing-objects": journal_missing_objects,
    "journal-bad-ids": journal_bad_ids,
    "ref-torn": ref_torn,
    "ref-garbage": ref_garbage,
    "format-garbage": format_garbage,
    "format-missing": format_missing,
    "format-newer": format_newer,
    "format-not-an-object": format_not_an_object,
    "foreign-files": foreign_files,
} | {f"format-{name}": format_wrong_type(name) for name in WRONG_TYPES}

# Ids built to escape the repository: given to the CLI (argv) and to the backend's API.
TRAVERSAL_IDS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    "ab/../../../../etc/passwd",
    "objects/../../x",
    "a" * 4096,
    "ab\\..\\..\\x",
    "~root",
    "%2e%2e%2f%2e%2e%2fetc",
]
NUL_IDS = ["ab\0cd", "\0", "0" * 40 + "\0"]  # argv cannot carry a NUL: the API gets these
