"""Object commands: cat-object (like git cat-file)."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("cat-object", help="print an object (like git cat-file -p)")
    p.add_argument("object_id", metavar="ID", help="object id, or a unique prefix of one (any case)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-p", dest="mode", action="store_const", const="pretty",
                      help="pretty-print JSON payloads, raw bytes as they are (default)")
    mode.add_argument("-t", dest="mode", action="store_const", const="type", help="print the kind")
    mode.add_argument("-s", dest="mode", action="store_const", const="size",
                      help="print the payload size in bytes")
    mode.add_argument("--raw", dest="mode", action="store_const", const="raw",
                      help="write the payload bytes exactly as stored")
    p.add_argument("--kind", help="fail unless the object has this kind")
    p.set_defaults(func=cmd_cat_object, mode="pretty")


def _pretty(payload: bytes) -> bytes | None:
    if payload[:1] not in (b"{", b"["):
        return None
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def cmd_cat_object(args, ctx) -> int:
    from objstore.backend import Provenance
    from objstore.query import Resolver

    with ctx.open_repo() as repo:
        _, object_id = Resolver(Provenance(repo)).object(args.object_id)
        kind, payload = repo.get(object_id, expect_kind=args.kind)
    if args.mode == "type":
        ctx.stdout.write(kind + "\n")
    elif args.mode == "size":
        ctx.stdout.write(f"{len(payload)}\n")
    else:
        out = (_pretty(payload) if args.mode == "pretty" else None) or payload
        ctx.stdout.flush()
        buffer = getattr(ctx.stdout, "buffer", None)
        if buffer is not None:
            buffer.write(out)
            buffer.flush()
        else:  # a text-only stream (tests): best effort
            ctx.stdout.write(out.decode("utf-8", "replace"))
    return 0
