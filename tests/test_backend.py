"""The scheduler-neutral provenance API (objstore.backend) on memory and local repositories."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC

import pytest
from damage import damage_object

from objstore import hashing, model
from objstore.backend import CSE, MISS, MISSING, SINGLE, ULTIMATE, ArgSpec, HandleSpec, Provenance, ValueSpec
from objstore.repo import Repository


@pytest.fixture(params=["memory", "local"])
def url(request, tmp_path):
    if request.param == "memory":
        return f"memory://prov-{uuid.uuid4().hex}/repo"
    return str(tmp_path / "repo")


@pytest.fixture
def prov(url, tmp_path):
    p = Provenance(Repository.open(url, index_dir=tmp_path / "index", create=True))
    yield p
    p.close()


def value(obj) -> ValueSpec:
    data = pickle.dumps(obj, protocol=3)
    return ValueSpec(hashing.hash_tag_bytes("Value", data), f"builtins.{type(obj).__name__}", "application/python-pickle", data)


def task_value(name: str, source: str = "def f(): pass") -> ValueSpec:
    data = pickle.dumps(("task", name, source), protocol=3)
    task_hash = hashing.hash_struct(["Task", f"ns.{name}", "source", source])
    return ValueSpec(task_hash, "redun.Task", "application/python-pickle", data, model.value.task_subtype(name, "ns", source))


def call(prov: Provenance, task: ValueSpec, arg: ValueSpec, result: ValueSpec, children=(), subtree=None, ts=None):
    for v in (task, arg, result):
        prov.values.record_value(v)
    args_hash = hashing.hash_arguments_from_hashes([arg.value_hash], {})
    return args_hash, prov.calls.record_call_node(
        task_name=f"ns.{task.subtype['name']}",
        task_hash=task.value_hash,
        args_hash=args_hash,
        result_hash=result.value_hash,
        child_call_hashes=list(children),
        args=[ArgSpec(arg.value_hash, position=0)],
        subtree_task_hashes=subtree if subtree is not None else [task.value_hash],
        timestamp=ts,
    )


def new_id() -> str:
    return str(uuid.uuid4())


def end_job(prov, task, args_hash, call_hash, execution_id, parent=None):
    job_id = new_id()
    prov.jobs.job_started(job_id, task_hash=task.value_hash, execution_id=execution_id, parent_id=parent)
    prov.jobs.job_ended(
        job_id, task_hash=task.value_hash, execution_id=execution_id, parent_id=parent,
        cached=False, call_hash=call_hash, args_hash=args_hash,
    )
    return job_id


# -- values -------------------------------------------------------------------------------------


def test_value_round_trip_and_subvalues(prov):
    child = value(7)
    parent = value([7])
    assert prov.values.record_value(parent, [child]) is True
    assert prov.values.record_value(parent, [child]) is False
    stored = prov.values.get_value(parent.value_hash)
    assert stored.data == parent.data and stored.subvalues == [child.value_hash]
    assert prov.values.get_value(child.value_hash).data == child.data
    assert prov.values.get_subvalues(parent.value_hash) == [child.value_hash]
    prov.flush()
    assert prov.values.get_subvalues(parent.value_hash) == [child.value_hash]
    assert prov.values.get_value("f" * 40) is MISSING


def test_value_data_is_raw_not_base64(prov):
    v = value(b"\x00\x01raw bytes")
    prov.values.record_value(v)
    _, payload = prov.repo.get(v.value_hash)
    assert payload.endswith(v.data)


# -- cache checks -------------------------------------------------------------------------------


def check(prov, task, args_hash, execution_id, current, scope="BACKEND", valid="full", context=None, allowed=None):
    eval_hash = hashing.hash_eval(task.value_hash, args_hash)
    return prov.cache.check_cache(task.value_hash, args_hash, eval_hash, execution_id, current, scope, valid, context, allowed)


def test_single_cache(prov):
    task, arg, result = task_value("inc"), value(1), value(2)
    args_hash, _ = call(prov, task, arg, result)
    ex = new_id()
    assert check(prov, task, args_hash, ex, {task.value_hash})[2] == MISS
    prov.cache.set_eval_cache(hashing.hash_eval(task.value_hash, args_hash), result.value_hash)
    got, call_hash, kind = check(prov, task, args_hash, ex, {task.value_hash})
    assert (kind, call_hash, got.data) == (SINGLE, None, result.data)
    assert check(prov, task, args_hash, ex, {task.value_hash}, scope="NONE") == (None, None, MISS)
    assert check(prov, task, args_hash, ex, {task.value_hash}, scope="CSE")[2] == MISS
    assert check(prov, task, args_hash, ex, {task.value_hash}, allowed={CSE, ULTIMATE})[2] == MISS
    # Last writer wins.
    other = value(3)
    prov.values.record_value(other)
    prov.cache.set_eval_cache(hashing.hash_eval(task.value_hash, args_hash), other.value_hash)
    prov.flush()
    assert check(prov, task, args_hash, ex, {task.value_hash})[0].data == other.data


def test_cse_cache_within_execution_and_context_filter(prov):
    task, arg, result = task_value("inc"), value(1), value(2)
    args_hash, call_hash = call(prov, task, arg, result)
    ex = new_id()
    end_job(prov, task, args_hash, call_hash, ex)
    got, hit_call, kind = check(prov, task, args_hash, ex, set(), scope="CSE")
    assert (kind, hit_call, got.data) == (CSE, call_hash, result.data)
    assert check(prov, task, args_hash, new_id(), set(), scope="CSE")[2] == MISS
    # With a context, only call nodes tagged with that redun.context qualify.
    ctx = value({"a": 1})
    assert check(prov, task, args_hash, ex, set(), scope="CSE", context=ctx.value_hash)[2] == MISS
    prov.tags.record_tags("CallNode", call_hash, [(model.tag.CONTEXT_KEY, ctx.value_hash)])
    prov.flush()
    assert check(prov, task, args_hash, ex, set(), scope="CSE", context=ctx.value_hash)[1] == call_hash


def test_ultimate_cache_requires_current_subtree(prov):
    task, child_task, arg = task_value("outer"), task_value("inner"), value(1)
    old = value("old")
    args_hash, old_call = call(prov, task, arg, old, subtree=[task.value_hash], ts=_ts(1))
    new = value("new")
    _, new_call = call(prov, task, arg, new, subtree=[task.value_hash, child_task.value_hash], ts=_ts(2))
    ex = new_id()
    both = {task.value_hash, child_task.value_hash}
    got, hit, kind = check(prov, task, args_hash, ex, both, valid="shallow")
    assert (kind, hit, got.data) == (ULTIMATE, new_call, new.data)  # newest current node wins
    # The inner task changed: the newest node is not current, the older one still is.
    got, hit, kind = check(prov, task, args_hash, ex, {task.value_hash}, valid="shallow")
    assert (kind, hit) == (ULTIMATE, old_call)
    assert check(prov, task, args_hash, ex, set(), valid="shallow")[2] == MISS
    assert prov.calls.get_subtree_tasks(new_call) == both
    # FULL checks never use call nodes.
    assert check(prov, task, args_hash, ex, both, valid="full")[2] == MISS


def _ts(second: int):
    from datetime import datetime

    return datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)


def test_explain_cache_miss(prov):
    task, arg, result = task_value("inc"), value(1), value(2)
    args_hash, call_hash = call(prov, task, arg, result)
    assert prov.cache.explain_cache_miss("inc", "ns", task.value_hash, args_hash)["reason"] == "new_task"
    assert prov.cache.explain_cache_miss("inc", "ns", task.value_hash, "a" * 40) == {
        "reason": "new_args", "call_hash": call_hash, "call_task_hash": task.value_hash, "call_args_hash": args_hash,
    }
    assert prov.cache.explain_cache_miss("dec", "ns", "b" * 40, "a" * 40) == {"reason": "new_call"}


# -- tags ---------------------------------------------------------------------------------------

ENTITY = "78bf63fc09553fc48aa883c2c3f9ecd5fd2abd6e"  # value_hash of 7 (spec §13)


def test_tag_edit_and_delete_match_redun_hashes(prov):
    [(dev, *_)] = prov.tags.record_tags("Value", ENTITY, [("env", "dev")])
    assert dev == "85811e85a86b8a5bde4927924459e5a07fb6b5bf"
    [(prod, *_)] = prov.tags.record_tags("Value", ENTITY, [("env", "prod")], update=True)
    assert prod == "688ee78f57ecf80b709edc6760bc6714cf07d173"
    assert prov.tags.get_tags([ENTITY]) == {ENTITY: [("env", "prod")]}
    [(deleted, *_)] = prov.tags.delete_tags(ENTITY, [("env", "prod")])
    assert deleted == "c887050d9f416f08fd57e66e34172314a55141e3"
    assert prov.tags.get_tags([ENTITY]) == {}
    prov.flush()
    assert prov.tags.get_tags([ENTITY]) == {}
    # new=True walks past the superseded tag to a fresh, current leaf.
    # As redun, a tag re-recorded one level down is not in the returned list.
    assert prov.tags.record_tags("Value", ENTITY, [("env", "dev")], new=True) == []
    leaf = hashing.hash_tag(ENTITY, "env", "dev", [dev])
    assert prov.tags.entity_tag_hashes(ENTITY).count(leaf) == 1 and prov.tags.is_current(leaf)
    assert prov.tags.get_tags([ENTITY]) == {ENTITY: [("env", "dev")]}
    assert prov.tags.record_tags("Value", ENTITY, []) == []


def test_update_tags_and_idempotence(prov):
    prov.tags.record_tags("Job", ENTITY, [("a", 1), ("b", [1, 2])])
    prov.tags.record_tags("Job", ENTITY, [("a", 1)])  # idempotent
    assert sorted(prov.tags.get_tags([ENTITY])[ENTITY]) == [("a", 1), ("b", [1, 2])]
    prov.tags.update_tags("Job", ENTITY, ["a"], [("c", {"x": None})])
    assert sorted(prov.tags.get_tags([ENTITY])[ENTITY], key=str) == [("b", [1, 2]), ("c", {"x": None})]
    prov.tags.delete_tags(ENTITY, [], keys=["b"])
    assert prov.tags.get_tags([ENTITY])[ENTITY] == [("c", {"x": None})]


# -- handles ------------------------------------------------------------------------------------


def handle(name: str, label: str) -> HandleSpec:
    h = hashing.hash_struct(["Handle", name, "call_hash", label, "x"])
    return HandleSpec(h, name, label, h)


def test_handles_fork_rollback_merge(prov):
    root, a, b, a2 = handle("db", "root"), handle("db", "a"), handle("db", "b"), handle("db", "a2")
    assert not prov.handles.is_valid_handle(root.hash, "db")  # unrecorded
    prov.handles.advance_handle([root], a)
    prov.handles.advance_handle([root], b)
    prov.handles.advance_handle([a], a2)
    assert all(prov.handles.is_valid_handle(h.hash, "db") for h in (root, a, b, a2))
    prov.handles.rollback_handle(a.hash, "db")
    assert prov.handles.is_valid_handle(a.hash, "db") and not prov.handles.is_valid_handle(a2.hash, "db")
    prov.handles.rollback_handle(root.hash, "db")
    assert prov.handles.is_valid_handle(root.hash, "db")
    assert not any(prov.handles.is_valid_handle(h.hash, "db") for h in (a, b, a2))
    # Advancing again (or merging into a new head) makes the handles valid again.
    merged = handle("db", "merged")
    prov.handles.advance_handle([a, b], merged)
    assert all(prov.handles.is_valid_handle(h.hash, "db") for h in (a, b, merged))
    assert not prov.handles.is_valid_handle(a2.hash, "db")
    prov.flush()
    assert sorted(prov.handles.children(root.hash)) == sorted([a.hash, b.hash])
    assert prov.repo.refs.list("handles/") == ["handles/db"]


# -- records ------------------------------------------------------------------------------------


def build_graph(prov):
    ex = new_id()
    task, arg, result = task_value("inc"), value(1), value([2])
    sub = value(2)
    prov.values.record_value(result, [sub])
    args_hash, call_hash = call(prov, task, arg, result)
    prov.jobs.record_execution(ex, ["scheduler.run", "inc(1)"])
    root = new_id()
    prov.jobs.job_started(root, task_hash=task.value_hash, execution_id=ex, parent_id=None)
    child = end_job(prov, task, args_hash, call_hash, ex, parent=root)
    prov.jobs.job_ended(root, task_hash=task.value_hash, execution_id=ex, parent_id=None, cached=False,
                        call_hash=call_hash, args_hash=args_hash)
    [(tag, *_)] = prov.tags.record_tags("Execution", ex, [("project", "p")])
    return dict(ex=ex, root=root, child=child, call=call_hash, task=task.value_hash, arg=arg.value_hash,
                result=result.value_hash, sub=sub.value_hash, tag=tag)


def test_iter_record_ids_edges(prov):
    g = build_graph(prov)
    ids = list(prov.records.iter_record_ids([g["ex"]]))
    assert len(ids) == len(set(ids))
    assert set(ids) == {g[k] for k in ("ex", "root", "child", "call", "task", "arg", "result", "sub", "tag")}
    assert ids[0] == g["ex"] and ids.index(g["root"]) < ids.index(g["child"])
    assert list(prov.records.iter_record_ids(["nonsense", "0" * 40])) == []


def test_records_round_trip_in_export_format(prov, tmp_path):
    g = build_graph(prov)
    ids = list(prov.records.iter_record_ids([g["ex"]]))
    exported = list(prov.records.get_records(ids))
    assert [r["_type"] for r in exported].count("Job") == 2
    job = next(r for r in exported if r.get("id") == g["root"])
    assert list(job) == ["_version", "_type", "id", "start_time", "end_time", "task_hash", "cached", "status",
                         "call_hash", "parent_id", "children", "execution_id"]
    assert job["children"] == [g["child"]] and job["status"] == "DONE"
    execution = next(r for r in exported if r["_type"] == "Execution")
    assert execution == {"_version": 1, "_type": "Execution", "id": g["ex"],
                         "args": '["scheduler.run", "inc(1)"]', "job_id": g["root"]}
    other = Provenance(Repository.open(f"memory://copy-{uuid.uuid4().hex}/r", index_dir=tmp_path / "i2", create=True))
    assert other.records.put_records(reversed(exported)) == len(exported)
    assert other.records.put_records(exported) == 0
    assert list(other.records.get_records(ids)) == exported
    other.close()


def test_second_repository_sees_everything_after_refresh(prov, url, tmp_path):
    g = build_graph(prov)
    task_hash, args_hash = g["task"], hashing.hash_arguments_from_hashes([g["arg"]], {})
    prov.cache.set_eval_cache(hashing.hash_eval(task_hash, args_hash), g["result"])
    handle_a = handle("h", "a")
    prov.handles.advance_handle([handle("h", "r")], handle_a)
    prov.flush()
    second = Provenance(Repository.open(url, index_dir=tmp_path / "second-index"))
    second.refresh()
    assert second.tags.get_tags([g["ex"]]) == {g["ex"]: [("project", "p")]}
    assert set(second.records.iter_record_ids([g["ex"]])) == set(prov.records.iter_record_ids([g["ex"]]))
    assert second.handles.is_valid_handle(handle_a.hash, "h")
    eval_hash = hashing.hash_eval(task_hash, args_hash)
    assert second.cache.check_cache(task_hash, args_hash, eval_hash, new_id(), set(), "BACKEND", "full")[2] == SINGLE
    assert second.cache.check_cache(task_hash, args_hash, eval_hash, g["ex"], set(), "CSE", "full")[1] == g["call"]
    second.close()


def test_corrupt_value_behind_eval_head_is_a_miss(tmp_path):
    url = str(tmp_path / "repo")
    prov = Provenance(Repository.open(url, index_dir=tmp_path / "i", create=True))
    task, arg, result = task_value("inc"), value(1), value(2)
    args_hash, _ = call(prov, task, arg, result)
    eval_hash = hashing.hash_eval(task.value_hash, args_hash)
    prov.cache.set_eval_cache(eval_hash, result.value_hash)
    prov.close()
    damage_object(url, result.value_hash, "corrupt")
    fresh = Provenance(Repository.open(url, index_dir=tmp_path / "j"))
    assert fresh.cache.check_cache(task.value_hash, args_hash, eval_hash, new_id(), set(), "BACKEND", "full") == (
        None, None, MISS,
    )
    fresh.close()


def test_derive_entries_rejects_malformed_payloads():
    from objstore.errors import CorruptObject

    with pytest.raises(CorruptObject):
        model.derive_entries(model.CALL, "a" * 40, b'{"task_hash": "../x"}')
    with pytest.raises(CorruptObject):
        model.derive_entries(model.VALUE, "a" * 40, b"no header")
    assert set(model.TABLES) >= {"objects", "evals", "cse", "calls_by_eval", "tag_children"}


def test_a_writer_trusts_what_it_wrote_only_until_a_read_finds_it_damaged(prov):
    """has() answers from a per-process memo of what it wrote or found listed (no index read),
    but once a read finds an object lost, the memo no longer hides it: it is written again."""
    spec = value("memo me")
    prov.values.record_value(spec, [])
    prov.flush()
    assert prov.core.has(spec.value_hash) and prov.core.has_kind(spec.value_hash, model.VALUE)
    other = value("listed, never written here")
    assert not prov.core.has(other.value_hash)
    prov.core.repo.damage.loose_missing([spec.value_hash])  # what a read that found it gone records
    assert not prov.core.has(spec.value_hash) and not prov.core.has_kind(spec.value_hash, model.VALUE)
    prov.values.record_value(spec, [])  # the next writer that has it writes it again ...
    prov.flush()
    assert prov.core.has(spec.value_hash)  # ... and the flush strikes it off the ledger
