"""Maintenance commands: fsck, gc, repack, unpack."""

from __future__ import annotations

import json
import re
import time

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*", re.IGNORECASE)
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"90"``, ``"30s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"`` -> seconds."""
    from objstore.cli import UsageError

    m = _DURATION.fullmatch(text or "")
    if m is None:
        raise UsageError(f"--grace takes a duration such as 0, 30s, 15m, 2h or 7d, not {text!r}")
    return float(m.group(1)) * _UNITS[(m.group(2) or "").lower() or None]


def register(sub) -> None:
    p = sub.add_parser(
        "fsck",
        help="verify every object, pack, journal file, eval head, ref and call node, and the index",
        description="Verify the repository: every object (frame checksum, kind, length, recomputable id), "
                    "every pack (content hash, toc, entries, no overlaps), every journal segment and "
                    "checkpoint, eval heads, handle refs, call nodes' references, and that the local index "
                    "agrees with the repository. Exit 0 when clean, 1 when not. Foreign files are reported "
                    "as warnings and left alone.",
    )
    p.add_argument("--sample", type=float, default=1.0, metavar="FRACTION",
                   help="verify a random fraction of the objects (every pack toc, journal file, head and ref is "
                        "still checked)")
    p.add_argument("--seed", type=int, default=None, help=argparse_suppress())
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes verifying packs and journal files (default: one per core when there are "
                        "many; a journal checkpoint is verified in a worker beside the packs; 1: all in this process)")
    p.add_argument("--repair", action="store_true",
                   help="rebuild what is derivable (index, eval heads, journal entries from a full scan), move "
                        "damaged files to lost+found/, and say what cannot be repaired")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_fsck)

    p = sub.add_parser(
        "gc",
        help="remove crash leftovers, compact the journal, drop retired packs (--prune: unreachable records)",
        description="Remove temp files left by crashed writers (on S3: abort the multipart uploads they never "
                    "finished, whose parts S3 keeps and bills), compact the journal (format 3.0) and remove "
                    "the journal files a checkpoint covers, and remove packs that repack/unpack retired; "
                    "with --prune, also values and call nodes nothing reachable from executions, eval heads, "
                    "tags and handles refers to. Nothing younger than the grace period is touched, so a live "
                    "writer is never robbed.",
    )
    p.add_argument("--grace", default="1h", metavar="DURATION",
                   help="keep anything younger than this (default 1h; e.g. 0, 30s, 15m, 2h, 7d)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("--prune", action="store_true", help="also remove unreachable values and call nodes")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("repack", help="merge small packs into big ones and drop duplicate copies",
                       description="Write the live entries of small packs (and of packs holding copies the index "
                                   "does not use) into packs of up to 64 MiB, then journal the new locations; "
                                   "the old packs are retired and removed by gc after the grace period.")  # fmt: skip
    p.add_argument("--all", action="store_true", help="rewrite every pack, not just small ones")
    p.add_argument("--dry-run", action="store_true", help="only say what would be rewritten")
    p.set_defaults(func=cmd_repack)

    p = sub.add_parser("unpack", help="write every packed object as a loose objects/ab/cdef file",
                       description="Write every packed object as a loose file (git's unpack-objects) and journal "
                                   "that it left its pack; the packs are retired and removed by gc after the "
                                   "grace period. `objstore config pack false` keeps new writes loose too.")  # fmt: skip
    p.set_defaults(func=cmd_unpack)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def _open(ctx, **kwargs):
    return ctx.open_repo(migrate=False, auto_compact=False, **kwargs)


def cmd_fsck(args, ctx) -> int:
    from objstore.cli import UsageError, bad_url_is_usage
    from objstore.errors import StorageError
    from objstore.maint.fsck import check_format_file, fsck
    from objstore.maint.repair import rebuild_format, repair
    from objstore.maint.report import Report

    if not 0.0 <= args.sample <= 1.0:
        raise UsageError(f"--sample takes a fraction between 0 and 1, not {args.sample}")
    url = ctx.repo_url()
    report = Report(url)
    with bad_url_is_usage(url):
        doc = check_format_file(url, ctx.storage_options(), report)
    if doc is None:
        if not args.repair:
            return _print_fsck(ctx, args, report, None)
        _, what = rebuild_format(url, ctx.storage_options(), ctx.index_dir(url))
        for p in report.problems:
            p.repaired = what
    progress = ctx.progress("fsck")
    with _open(ctx, url=url) as repo:
        t0 = time.monotonic()
        report, found = fsck(repo, sample=args.sample, seed=args.seed, progress=progress, report=report, jobs=args.jobs)
        seconds = time.monotonic() - t0
        after = None
        if args.repair and (report.errors or found.unjournaled or found.bad_evals):
            try:
                done = repair(repo, report, found)
            except StorageError as exc:
                report.notes.append(f"cannot repair: {exc}")
            else:
                report.notes.extend(f"repair: {line}" for line in done)
                after, _ = fsck(repo, sample=args.sample, seed=args.seed, progress=progress, jobs=args.jobs)
    report.notes.append(f"fsck took {seconds:.2f}s ({report.checked.get('objects', 0) / max(seconds, 1e-9):,.0f} objects/s)")
    return _print_fsck(ctx, args, report, after)


def _print_fsck(ctx, args, report, after) -> int:
    if args.json:
        doc = report.to_json()
        if after is not None:
            doc["after_repair"] = after.to_json()
        ctx.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        ctx.stdout.write(report.text())
        if after is not None:
            left = after.errors
            ctx.stdout.write("after repair: " + ("clean\n" if not left else f"{len(left)} error(s) left:\n"))
            for p in left:
                ctx.stdout.write(p.line() + "\n")
    final = after if after is not None else report
    return 0 if final.clean else 1


def cmd_gc(args, ctx) -> int:
    from objstore.maint.gc import gc

    grace = parse_duration(args.grace)
    with _open(ctx) as repo:
        result = gc(repo, grace=grace, dry_run=args.dry_run, prune=args.prune, progress=ctx.progress("gc"))
    ctx.stdout.write("\n".join(result.lines()) + "\n")
    return 0


def cmd_repack(args, ctx) -> int:
    from objstore.maint.repack import repack

    with _open(ctx) as repo:
        t0 = time.monotonic()
        r = repack(repo, everything=args.all, dry_run=args.dry_run, progress=ctx.progress("repack"))
        seconds = time.monotonic() - t0
    verb = "would rewrite" if args.dry_run else "rewrote"
    ctx.stdout.write(
        f"{verb} {r.packs_read} pack(s) ({r.bytes_read / 1e6:.1f} MB) into {len(r.packs_written)} "
        f"({r.bytes_written / 1e6:.1f} MB): {r.objects} objects kept, {r.duplicates} duplicate copies dropped, "
        f"{len(r.retired)} pack(s) retired (gc removes them after the grace period) in {seconds:.2f}s"
        f" ({r.bytes_read / 1e6 / max(seconds, 1e-9):.0f} MB/s)\n"
    )
    for where, why in r.damaged:
        ctx.stdout.write(f"left alone: {where}: {why} (see `objstore fsck`)\n")
    return 0


def cmd_unpack(args, ctx) -> int:
    from objstore.maint.repack import unpack

    with _open(ctx) as repo:
        t0 = time.monotonic()
        moved = unpack(repo, progress=ctx.progress("unpack"))
        seconds = time.monotonic() - t0
    ctx.stdout.write(f"unpacked {moved.objects} objects ({moved.bytes / 1e6:.1f} MB) from {len(moved.retired)} pack(s) "
                     f"in {seconds:.2f}s; the packs are retired (gc removes them after the grace period)\n")  # fmt: skip
    for where, why in moved.failed:
        ctx.stdout.write(f"left packed: {where}: {why} (see `objstore fsck`)\n")
    return 0 if not moved.failed else 1
