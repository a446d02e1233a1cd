"""CallNodes: a task applied to arguments, its result, its children (in call order) and the tasks
of its subtree (what an ULTIMATE cache check compares with the scheduler's current tasks)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from objstore import hashing
from objstore.errors import CorruptObject
from objstore.ids import ObjectId, validate_hash
from objstore.model import value
from objstore.model.base import TASK, Edge, RecordKind, dump
from objstore.model.schema import IndexEntry, eval_key, timed
from objstore.model.times import ts_key

NAME = "call"


def argument_hash(call_hash: str, key: str, value_hash: str) -> str:
    """redun's arg_hash; ``key`` is the export key (a keyword, or a position as digits)."""
    position, keyword = (int(key), None) if key.isdigit() else (None, key)
    return hashing.hash_argument(call_hash, position, keyword, value_hash)


def doc(
    *,
    task_name: str,
    task_hash: str,
    args_hash: str,
    value_hash: str,
    timestamp: str,
    args: dict[str, dict],
    children: list[str],
    subtree_tasks: Iterable[str] = (),
) -> dict[str, Any]:
    return {
        "task_name": task_name,
        "task_hash": task_hash,
        "args_hash": args_hash,
        "value_hash": value_hash,
        "timestamp": timestamp,
        # JSON objects lose order under sort_keys: keep the argument order as a list.
        "args": [[key, arg] for key, arg in args.items()],
        "children": list(children),
        "subtree_tasks": sorted(set(subtree_tasks)),
    }


def args_of(call: dict[str, Any]) -> dict[str, dict]:
    return {key: arg for key, arg in call.get("args", [])}


class CallNode(RecordKind):
    name = NAME
    export_type = "CallNode"
    export_id_field = "call_hash"

    def build(self, call_hash: str, **fields: Any) -> tuple[bytes, list[IndexEntry]]:
        """(payload, index entries); fields as ``doc``."""
        d = doc(**fields)
        return dump(d), self.entries_of(call_hash, d)

    def verify_doc(self, object_id: str, doc: dict[str, Any]) -> None:
        # The node's own hash covers children that may not have been recorded (prov=False),
        # so only its argument hashes can be recomputed.
        for key, arg in doc.get("args", []):
            if argument_hash(object_id, key, arg["value_hash"]) != arg["arg_hash"]:
                raise CorruptObject(object_id, f"argument {key!r} hash does not match")

    def entries(self, object_id: str, doc: dict[str, Any]) -> list[IndexEntry]:
        task_hash = validate_hash(doc["task_hash"])
        args_hash = validate_hash(doc["args_hash"])
        ts = ts_key(doc.get("timestamp"))
        out: list[IndexEntry] = [
            ("add", "calls_by_eval", eval_key(task_hash, args_hash), timed(ts, object_id)),
            ("add", "calls_by_task", task_hash, timed(ts, object_id)),
            ("add", "calls_by_args", args_hash, timed(ts, object_id, task_hash)),
            ("put", "call_result", object_id, validate_hash(doc["value_hash"])),
        ]
        out.extend(("add", "call_subtree", object_id, validate_hash(t)) for t in doc.get("subtree_tasks", ()))
        # Read backwards by queries: which calls returned a value, which took it as an argument.
        out.append(("add", "calls_by_result", doc["value_hash"], timed(ts, object_id)))
        for value_hash in dict.fromkeys(validate_hash(arg["value_hash"]) for _, arg in doc.get("args", ())):
            out.append(("add", "calls_by_arg", value_hash, timed(ts, object_id)))
        return out

    def edges(self, object_id: str, doc: dict[str, Any]) -> Iterator[Edge]:
        yield TASK, doc["task_hash"]
        yield value.NAME, doc["value_hash"]
        for _, arg in doc["args"]:
            yield value.NAME, arg["value_hash"]
        for _, arg in doc["args"]:
            for upstream in arg.get("upstream", ()):
                yield NAME, upstream
        for child in doc["children"]:
            yield NAME, child

    def to_export(self, object_id: str, payload: bytes, **context: Any) -> dict[str, Any]:
        obj = self.doc_of(object_id, payload, context)
        return {
            **self.export_header(),
            "call_hash": object_id,
            "task_name": obj["task_name"],
            "task_hash": obj["task_hash"],
            "args_hash": obj["args_hash"],
            "value_hash": obj["value_hash"],
            "timestamp": obj["timestamp"],
            "args": {
                key: {
                    "arg_hash": arg["arg_hash"],
                    "value_hash": arg["value_hash"],
                    "upstream": sorted(arg.get("upstream", [])),
                }
                for key, arg in obj["args"]
            },
            "children": list(obj["children"]),
        }

    def from_export(self, record: dict[str, Any]) -> tuple[ObjectId, bytes]:
        object_id = validate_hash(record["call_hash"])
        args = {
            str(key): {
                "arg_hash": validate_hash(arg["arg_hash"]),
                "value_hash": validate_hash(arg["value_hash"]),
                "upstream": sorted(validate_hash(u) for u in arg.get("upstream", [])),
            }
            for key, arg in record["args"].items()
        }
        payload = dump(
            doc(
                task_name=record["task_name"],
                task_hash=validate_hash(record["task_hash"]),
                args_hash=validate_hash(record["args_hash"]),
                value_hash=validate_hash(record["value_hash"]),
                timestamp=record["timestamp"],
                args=args,
                children=[validate_hash(c) for c in record["children"]],
            )
        )
        return object_id, payload


KIND = CallNode()
