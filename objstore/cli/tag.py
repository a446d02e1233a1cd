"""`objstore tag`: list, add, update and remove tags, as `redun tag` does.

    objstore tag list [--values] [key[=value] ...]      counts per key (or key=value), or the
                                                        records carrying the given tags
    objstore tag list --exec|--job|--value|--id ID      one record's current tags
    objstore tag add ID... key=value...                 new current tags
    objstore tag update ID... key=value...              replace the current tags of these keys
    objstore tag rm ID... [--] key[=value]...           remove tags (a key alone: any value)

Edits make the backend calls redun's apply_tags and `redun tag` make (record_tags with new= /
update=, delete_tags), so tags supersede each other exactly as in redun: nothing is rewritten,
a newer tag names the ones it replaces.
"""

from __future__ import annotations

import json
from typing import Any


def register(sub) -> None:
    p = sub.add_parser("tag", help="list, add, update or remove tags (as `redun tag`)",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)  # fmt: skip
    tag_sub = p.add_subparsers(dest="tag_command", metavar="ACTION", required=True)

    lp = tag_sub.add_parser("list", help="tag counts, the records with some tags, or one record's tags")
    lp.add_argument("filters", nargs="*", metavar="KEY[=VALUE]", help="list the records carrying these tags")
    lp.add_argument("--values", action="store_true", help="count per key=value instead of per key")
    which = lp.add_mutually_exclusive_group()
    for flag in ("exec", "job", "value", "id"):
        which.add_argument(f"--{flag}", metavar="ID", help=f"the current tags of this {flag if flag != 'id' else 'record'}")
    lp.add_argument("--json", action="store_true", help="machine-readable output")
    lp.set_defaults(func=cmd_list)

    for name, doc in (("add", "add tags to records"), ("update", "replace the current tags of these keys"),
                      ("rm", "remove tags (KEY alone removes every value of it)")):  # fmt: skip
        ap = tag_sub.add_parser(name, help=doc)
        ap.add_argument("items", nargs="+", metavar="ID... KEY=VALUE...",
                        help="record ids (or unique prefixes, - or ~N) then tags" + ("; -- ends the ids" if name == "rm" else ""))
        ap.set_defaults(func=cmd_edit, action=name)


def _parse_edit(items: list[str], *, removing: bool, is_record) -> tuple[list[str], list[tuple[str, Any]]]:
    """(record ids, tags) of ``ID... [--] key[=value]...``. argparse drops a ``--``, so the ids
    end at the first item with ``=``, or that cannot be a record here (``tag rm ID key``)."""
    from objstore.cli import UsageError
    from objstore.query.tags import parse_tag

    ids: list[str] = []
    i = 0
    while i < len(items) and "=" not in items[i] and items[i] != "--" and (not ids or is_record(items[i])):
        ids.append(items[i])
        i += 1
    if i < len(items) and items[i] == "--":
        i += 1
    if not ids:
        raise UsageError("give at least one record id before the tags")
    try:
        tags = [parse_tag(t, value_required=not removing) for t in items[i:]]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not tags and not removing:
        raise UsageError("give at least one key=value tag")
    return ids, tags


def cmd_edit(args, ctx) -> int:
    from objstore.backend import Provenance
    from objstore.errors import ObjstoreError
    from objstore.query import open_query
    from objstore.query.lists import ANY_VALUE
    from objstore.query.resolve import looks_like_id
    from objstore.query.tags import add_tags, entity, remove_tags, update_tags

    removing = args.action == "rm"
    with ctx.open_repo() as repo:
        q = open_query(Provenance(repo))

        def is_record(text: str) -> bool:
            if not looks_like_id(text):
                return False
            try:
                entity(q, text)
            except (ObjstoreError, ValueError):
                return False
            return True

        ids, tags = _parse_edit(args.items, removing=removing, is_record=is_record)
        targets = [entity(q, text) for text in ids]  # every id resolves before anything is written
        for entity_type, entity_id in targets:
            if args.action == "add":
                add_tags(q, entity_type, entity_id, tags)
            elif args.action == "update":
                update_tags(q, entity_type, entity_id, tags)
            else:
                keys = [k for k, v in tags if v is ANY_VALUE]
                remove_tags(q, entity_id, [(k, v) for k, v in tags if v is not ANY_VALUE], keys)
            verb = {"add": "add", "update": "update", "rm": "delete"}[args.action]
            shown = " ".join(f"{k}={json.dumps(v)}" for k, v in tags if v is not ANY_VALUE)
            keys_only = " ".join(k for k, v in tags if v is ANY_VALUE)
            ctx.stdout.write(f"{verb} tag {entity_type}:{entity_id} {' '.join(x for x in (shown, keys_only) if x)}".rstrip() + "\n")
    return 0


def cmd_list(args, ctx) -> int:
    from objstore.backend import Provenance
    from objstore.cli import UsageError
    from objstore.cli._text import Printer
    from objstore.cli.log import show_records
    from objstore.query import open_query, to_jsonable
    from objstore.query.lists import TYPES, ListSpec, list_records
    from objstore.query.tags import entity, format_tag, parse_tag, tag_counts

    try:
        filters = [parse_tag(t, value_required=False) for t in args.filters]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with ctx.open_repo() as repo:
        q = open_query(Provenance(repo))
        out = Printer(ctx.stdout)
        one = args.exec or args.job or args.value or args.id
        if one:
            kinds = {"exec": "Execution", "job": "Job", "value": ("Value", "Task")}
            entity_type, entity_id = entity(q, one)
            wanted = next((kinds[f] for f in ("exec", "job", "value") if getattr(args, f)), None)
            if wanted and entity_type not in (wanted if isinstance(wanted, tuple) else (wanted,)):
                raise UsageError(f"{one} is a {entity_type}, not a {wanted if isinstance(wanted, str) else 'value'}")
            tags = sorted(q.tags_of(entity_id), key=lambda kv: (kv[0], json.dumps(kv[1], sort_keys=True)))
            if args.json:
                json.dump({"entity_type": entity_type, "entity_id": entity_id,
                           "tags": [[k, v] for k, v in tags]}, ctx.stdout, indent=2)  # fmt: skip
                ctx.stdout.write("\n")
            else:
                out.line(f"{entity_type} {entity_id}")
                for key, value in tags:
                    out.line(format_tag(key, value, max_length=1 << 30), 2)
            return 0
        if filters:
            records = list_records(q, ListSpec(types=set(TYPES), tags=filters))
            if args.json:
                json.dump(to_jsonable([r for _, r in records]), ctx.stdout, indent=2)
                ctx.stdout.write("\n")
            else:
                show_records(out, records)
            return 0
        counts = tag_counts(q, by_value=args.values)
        if args.json:
            json.dump(to_jsonable(counts), ctx.stdout, indent=2, sort_keys=True)
            ctx.stdout.write("\n")
        else:
            out.tag_counts(counts, by_value=args.values)
    return 0


__all__ = ["register"]
