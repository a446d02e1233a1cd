"""Interchange: export and import (JSON lines, objstore's stream or redun's), migrate-redun."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

EXPORT_HELP = """\
Writes JSON lines to stdout (or -o FILE): every execution newest first with everything it
reaches, or what the given ids reach.

Without --redun: objstore's own stream, which also carries eval-cache heads, subtree tasks,
handle graphs and states, running jobs and every other object, so a repository imported from it
keeps its cache (a re-run is cached). Use it between objstore repositories that cannot reach
each other (otherwise prefer push/pull).

With --redun: exactly the records of `redun export` (_version 1), for `redun import` into a
redun database. redun's format has no eval cache: a run after importing it recomputes.
"""


def register(sub) -> None:
    p = sub.add_parser("export", help="write records as JSON lines (objstore's stream, or redun's with --redun)",
                       description=EXPORT_HELP, formatter_class=_raw())
    p.add_argument("ids", nargs="*", metavar="ID", help="roots: executions, jobs, call nodes, values, tags (any unique prefix)")
    p.add_argument("--redun", action="store_true", help="redun's export format, for `redun import`")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="read JSON lines from `objstore export` or `redun export`",
                       description="Import either stream (detected from its first line) into this "
                       "repository. Idempotent: what the repository has is left alone. Every line is "
                       "checked first; the first bad line stops the import with its number, and the "
                       "lines before it stay imported, consistently.")
    p.add_argument("file", nargs="?", default="-", metavar="FILE", help="the stream (default or '-': stdin)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "migrate-redun", help="copy a redun database (sqlite or PostgreSQL), cache included, into this repository",
        description="Read a redun database directly and write all of it into this repository, including "
        "what `redun export` drops: the eval cache, subtree tasks, handles and their states, tag "
        "edits, values in redun's value store. Afterwards a re-run of the same workflow on objstore "
        "is cached. The database is opened read-only and never written. DB_URI is redun's db_uri as "
        "written in redun.ini (sqlite:///path, postgresql://user@host/db; $REDUN_DB_USERNAME and "
        "$REDUN_DB_PASSWORD are added as redun adds them), or the path of a redun.ini or its directory.",
    )
    p.add_argument("db_uri", metavar="DB_URI", help="redun's db_uri, or a redun.ini / config directory")
    p.add_argument("--value-store", metavar="PATH",
                   help="redun's value store (value_store_path); default: from the redun.ini beside the "
                   "database, when there is one")
    p.set_defaults(func=cmd_migrate)


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter


# -- export / import ----------------------------------------------------------------------------


@contextlib.contextmanager
def _output(ctx, path: str | None):
    if not path or path == "-":
        yield ctx.stdout
        return
    from objstore.cli import UsageError

    target = ctx.cwd / path
    if target.exists() and not target.is_file():
        # /dev/null, /dev/stdout, a FIFO, <(gzip >x): written straight into. Renaming a temp file
        # over it would replace the device itself (as root, /dev/null became a regular file).
        try:
            out = open(target, "w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        with out:
            yield out
        return
    target = Path(os.path.realpath(target))  # through a symlink: replace the file, not the link
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        out = open(tmp, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with out:
            yield out
        tmp.replace(target)  # a whole file or none: a failed export never leaves half of one
    finally:
        tmp.unlink(missing_ok=True)


def _roots(ctx, repo, ids: list[str]) -> list[str] | None:
    if not ids:
        return None
    from objstore import model
    from objstore.backend import Provenance
    from objstore.query.resolve import LOGGABLE, Resolver

    resolver = Resolver(Provenance(repo))
    return [resolver.any(prefix, (*LOGGABLE, model.TAG))[1] for prefix in ids]


def cmd_export(args, ctx) -> int:
    from objstore.sync import export

    with ctx.open_repo() as repo:
        repo.refresh()
        roots = _roots(ctx, repo, args.ids)
        with _output(ctx, args.output) as out:
            count = (export.export_redun if args.redun else export.export_full)(repo, roots, out)
    if args.output:
        kind = "records" if args.redun else "lines"
        ctx.stderr.write(f"exported {count} {kind} to {args.output}\n")
    return 0


def _input_lines(ctx, path: str):
    """(a context manager giving the stream's lines as bytes, what to call it in errors)."""
    if path == "-":
        stdin = getattr(ctx, "stdin", None) or sys.stdin
        return contextlib.nullcontext(getattr(stdin, "buffer", stdin)), "stdin"
    from objstore.cli import UsageError

    try:
        return open(ctx.cwd / path, "rb"), path
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def cmd_import(args, ctx) -> int:
    from objstore.sync.imports import import_lines

    source, where = _input_lines(ctx, args.file)
    with ctx.open_repo() as repo, source as lines:
        result = import_lines(repo, lines, where=where)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(result.kinds.items())) or "none new"
    ctx.stdout.write(
        f"imported {result.objects} objects ({kinds}), {result.evals} eval heads, {result.notes} notes, "
        f"{result.states} handle states from {where} ({result.stream or 'empty'} stream); "
        f"{result.present} already present\n"
    )
    return 0


# -- migrate-redun ------------------------------------------------------------------------------


def cmd_migrate(args, ctx) -> int:
    from objstore.cli import UsageError
    from objstore.errors import UnsupportedSource
    from objstore.sync import redun_db
    from objstore.sync.migrate import migrate

    try:
        source = redun_db.locate(args.db_uri, cwd=ctx.cwd, value_store=args.value_store,
                                 username=ctx.environ.get("REDUN_DB_USERNAME"),
                                 password=ctx.environ.get("REDUN_DB_PASSWORD"))
    except ValueError as exc:
        if isinstance(exc, UnsupportedSource):
            raise
        raise UsageError(str(exc)) from None
    with ctx.open_repo() as repo:
        with ctx.progress("migrate-redun") as progress:
            stats = migrate(source, repo, progress=progress)
    ctx.stdout.write(
        f"migrated redun schema {stats.schema} from {source.shown}: {stats.objects} new objects "
        f"({stats.summary()}), {stats.evals} eval heads, {stats.states} handle states; "
        f"{stats.present} already present, in {stats.seconds:.2f}s\n"
    )
    return 0


__all__ = ["register"]
