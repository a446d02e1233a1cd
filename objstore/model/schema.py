"""The index's tables, and the one place their composite keys and values are built and parsed.

Pure. Everything in the index is derived from objects (and journal notes), one object at a
time, so a journal replay and a full-scan reindex build the same tables. Composite keys and
values join fixed-width ids with ":"; a timestamp first (``ts_key``) makes multi-table values
sort oldest first. Multi (dupsort) values must stay under LMDB's 511 bytes, so free text (task
names, handle names) is hashed into a key, never stored as one.
"""

from __future__ import annotations

from objstore import hashing

# (op, table, key, value); op is "put" | "add" | "del" | "delall" (objstore.index.Index.apply).
IndexEntry = tuple[str, str, str, str]

SEP = ":"
EXECUTIONS_KEY = "all"  # the one key of the executions table

# name -> multi (dupsort). Values of multi tables are built to sort oldest first.
TABLES: dict[str, bool] = {
    "objects": False,  # object id -> kind
    "packed": False,  # object id -> its pack.Location ("name:offset:length"); absent: loose
    "evals": False,  # eval_hash -> value_hash (eval-cache heads; written by the repository)
    "value_store": False,  # value_hash -> URL of the value store holding it (format 2.1)
    "retired": False,  # pack name -> when repack/unpack retired it (gc removes it after the grace)
    # Values
    "subvalues": True,  # parent value_hash -> child value_hash
    "value_type": False,  # value_hash -> redun type name (job status needs the result's type)
    "task_name": False,  # task_hash -> task_name_key
    "tasks_by_name": True,  # task_name_key -> task_hash
    "value_parents": True,  # child value_hash -> parent value_hash (subvalues read backwards)
    "files_by_path": True,  # path_key(path) -> value_hash of a File value with that path
    # CallNodes
    "calls_by_eval": True,  # eval_key(task, args) -> timed(ts, call_hash)          (ULTIMATE)
    "call_subtree": True,  # call_hash -> task_hash                               (ULTIMATE)
    "call_result": False,  # call_hash -> result value_hash
    "calls_by_task": True,  # task_hash -> timed(ts, call_hash)                     (explain)
    "calls_by_args": True,  # args_hash -> timed(ts, call_hash, task_hash)          (explain)
    "call_context": True,  # call_hash -> context_hash (from redun.context tags)   (context filter)
    "calls_by_result": True,  # value_hash -> timed(ts, call_hash): calls that returned it  (query)
    "calls_by_arg": True,  # value_hash -> timed(ts, call_hash): calls it was an argument of (query)
    # Jobs and executions
    "cse": True,  # cse_key(exec, task, args) -> timed(ts, job_id, call_hash)  (ended jobs; CSE)
    "job_start": False,  # job_id -> canonical JSON of the start (journal note; running/dead jobs)
    "job_children": True,  # parent job_id -> timed(ts, job_id)
    "jobs_by_call": True,  # call_hash -> timed(ts, job_id): ended jobs of a call node     (query)
    "executions": True,  # EXECUTIONS_KEY -> timed(ts, execution_id)
    "exec_updated": False,  # execution_id -> timestamp (heartbeat note)
    # Tags
    "tags_by_entity": True,  # entity_id -> tag_hash (all, current or not)
    "tag_children": True,  # parent tag_hash -> child tag_hash (current = no children)
    # Handles
    "handles": False,  # handle hash -> handle record id (present = recorded)
    "handles_by_name": True,  # handle_name_key(fullname) -> handle hash
    "handle_children": True,  # parent handle hash -> child handle hash
}


# -- builders ---------------------------------------------------------------------------------


def timed(ts: str, *ids: str) -> str:
    """A multi-table value that sorts by time: ``ts:id[:id…]`` (ts from times.ts_key)."""
    return SEP.join((ts, *ids))


def eval_key(task_hash: str, args_hash: str) -> str:
    return f"{task_hash}{SEP}{args_hash}"


def cse_key(execution_id: str, task_hash: str, args_hash: str) -> str:
    return SEP.join((execution_id, task_hash, args_hash))


def task_name_key(namespace: str | None, name: str) -> str:
    return hashing.hash_struct(["TaskName", namespace or "", name])


def handle_name_key(fullname: str) -> str:
    return hashing.hash_struct(["HandleName", fullname])


def path_key(path: str) -> str:
    """A File path as an index key (paths can be longer than LMDB's 511-byte keys)."""
    return hashing.hash_struct(["FilePath", path])


# -- parsers ----------------------------------------------------------------------------------


def untimed(value: str) -> list[str]:
    """The ids of a ``timed`` value, without its timestamp."""
    return value.split(SEP)[1:]


def timed_id(value: str) -> str:
    """The first id of a ``timed`` value (call_hash, job_id or execution_id)."""
    return value.split(SEP, 2)[1]


def timestamp_of(value: str) -> str:
    return value.split(SEP, 1)[0]


__all__ = [
    "IndexEntry", "TABLES", "EXECUTIONS_KEY", "timed", "eval_key", "cse_key", "task_name_key",
    "handle_name_key", "path_key", "untimed", "timed_id", "timestamp_of",
]
