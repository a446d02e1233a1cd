"""Object commands: cat-object (like git cat-file)."""

from __future__ import annotations

import json


def _kinds() -> list[str]:
    from objstore import model

    return sorted(model.REGISTRY)


def register(sub) -> None:
    p = sub.add_parser(
        "cat-object",
        help="print an object (like git cat-file -p)",
        description="Print an object's payload: JSON pretty-printed, other bytes as they are. On a "
        "terminal, binary payloads (pickled values...) are described instead of written; --raw "
        "writes them anyway, and a pipe or file always gets them.",
    )
    p.add_argument("object_id", metavar="ID", help="object id, or a unique prefix of one (any case)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-p", dest="mode", action="store_const", const="pretty",
                      help="pretty-print JSON payloads, raw bytes as they are (default)")
    mode.add_argument("-t", dest="mode", action="store_const", const="type", help="print the kind")
    mode.add_argument("-s", dest="mode", action="store_const", const="size",
                      help="print the payload size in bytes")
    mode.add_argument("--raw", dest="mode", action="store_const", const="raw",
                      help="write the payload bytes exactly as stored (to a terminal too)")
    p.add_argument("--kind", choices=_kinds(), metavar="KIND",
                   help=f"fail unless the object has this kind ({', '.join(_kinds())})")
    p.set_defaults(func=cmd_cat_object, mode="pretty")


def _pretty(payload: bytes) -> bytes | None:
    if payload[:1] not in (b"{", b"["):
        return None
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _is_text(payload: bytes) -> bool:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\n\t\r" for c in text)


def _describe(kind: str, object_id: str, payload: bytes) -> bytes:
    """What a terminal gets instead of binary bytes: a value's header and a safe preview (no
    pickle is ever run: objstore.query.preview), or a size line for anything else."""
    from objstore import model
    from objstore.errors import CorruptObject
    from objstore.model import value as value_kind
    from objstore.query.preview import preview_value

    hint = "not written to a terminal; --raw writes them, as does a pipe or a file"
    if kind == model.VALUE:
        try:
            header, data = value_kind.split(payload, object_id)
        except CorruptObject:
            pass
        else:
            shown = preview_value(header["type"], header["format"], data, header.get("subtype"))
            return (json.dumps(header, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
                    + f"# {len(data)} bytes of {header['format']} data ({hint})\n"
                    + f"# preview: {shown}\n").encode("utf-8")
    return f"# {kind} {object_id}: {len(payload)} bytes of binary data ({hint})\n".encode()


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
        isatty = getattr(ctx.stdout, "isatty", None)
        if args.mode == "pretty" and out is payload and callable(isatty) and isatty() and not _is_text(payload):
            out = _describe(kind, object_id, payload)  # raw pickle bytes would garble the terminal
        ctx.stdout.flush()
        buffer = getattr(ctx.stdout, "buffer", None)
        if buffer is not None:
            buffer.write(out)
            buffer.flush()
        else:  # a text-only stream (tests): best effort
            ctx.stdout.write(out.decode("utf-8", "replace"))
    return 0
