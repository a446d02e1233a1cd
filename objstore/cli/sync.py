"""Repository to repository: push, pull, sync."""

from __future__ import annotations

SYNC_HELP = """\
Copies what the destination lacks: pack files and loose objects first, then eval heads, then
journal segments, then handle refs (merged by compare-and-swap: what either side invalidated
stays invalid). Nothing is re-encoded and nothing the destination has is replaced. Only
listings are compared, so a sync with nothing to do costs a few requests. An interrupted sync
leaves a valid destination (a journal segment is only written once all its objects are there);
run it again to copy what is still missing. REMOTE, SRC and DST are URLs, paths, or names from
`objstore repo list`.
"""



def register(sub) -> None:
    for name, help_, desc in (
        ("push", "copy this repository's new objects, heads, journal and refs to REMOTE", "push REMOTE"),
        ("pull", "copy REMOTE's new objects, heads, journal and refs into this repository", "pull REMOTE"),
    ):
        p = sub.add_parser(name, help=help_, description=f"objstore {desc}: {help_}.\n\n{SYNC_HELP}",
                           formatter_class=_raw())
        p.add_argument("remote", metavar="REMOTE", help="a remote name (objstore repo list), URL or path")
        p.add_argument("--dry-run", "-n", action="store_true", help="only say what would be copied")
        p.set_defaults(func=cmd_push if name == "push" else cmd_pull)

    p = sub.add_parser("sync", help="copy what DST lacks from SRC (any two repositories)",
                       description=f"objstore sync SRC DST: copy what DST lacks from SRC.\n\n{SYNC_HELP}",
                       formatter_class=_raw())
    p.add_argument("src", metavar="SRC", help="source: remote name, URL or path")
    p.add_argument("dst", metavar="DST", help="destination: remote name, URL or path (an existing repository)")
    p.add_argument("--dry-run", "-n", action="store_true", help="only say what would be copied")
    p.set_defaults(func=cmd_sync)


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter


# -- push / pull / sync -------------------------------------------------------------------------


def _endpoint(ctx, where, role: str):
    from objstore.cli import bad_url_is_usage
    from objstore.sync.endpoint import open_endpoint

    with bad_url_is_usage(where.url):
        return open_endpoint(where.url, where.storage_options, role=role)


def _shown(where) -> str:
    return f"{where.remote} ({where.url})" if where.remote else where.url


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _transfer(ctx, src_where, dst_where, *, dry_run: bool, verb: str, dst_is_home: bool = False) -> int:
    from objstore.cli import UsageError
    from objstore.repo import normalize_url
    from objstore.sync import transfer

    if normalize_url(src_where.url) == normalize_url(dst_where.url):
        raise UsageError(f"source and destination are the same repository: {src_where.url}")
    src = _endpoint(ctx, src_where, "source")
    dst = _endpoint(ctx, dst_where, "destination")
    plan = transfer.plan(src, dst)
    target = f"{_shown(src_where)} -> {_shown(dst_where)}"
    if plan.empty:
        ctx.stdout.write(f"{verb}: {target}: up to date\n")
        return 0
    if dry_run:
        ctx.stdout.write(
            f"{verb} (dry run): {target}: would copy {len(plan.packs)} packs, {len(plan.loose)} loose "
            f"objects, {len(plan.evals)} eval heads, {len(plan.journal)} journal segments "
            f"({_size(plan.nbytes)}) and merge {len(plan.refs)} refs\n"
        )
        for merge in plan.refs:
            ctx.stdout.write(f"  refs/{merge.name}: {'create' if merge.created else 'merge'}\n")
        return 0
    with ctx.progress(verb) as progress:
        result = transfer.run(plan, progress)
        if not dst.writes_eval_files:
            _catch_up(ctx, dst_where, progress, is_home=dst_is_home)
    rate = result.objects / result.seconds if result.seconds > 0 else 0.0
    ctx.stdout.write(
        f"{verb}: {target}: {result.objects} objects ({result.packs} packs, {result.loose} loose), "
        f"{result.evals} eval heads, {result.segments} journal segments, {result.refs} refs, "
        f"{_size(result.nbytes)} in {result.seconds:.2f}s ({rate:,.0f} objects/s)\n"
    )
    for why in result.skipped:
        ctx.stderr.write(f"objstore: warning: not copied: {why}\n")
    if result.skipped:
        from objstore.errors import ObjstoreError

        raise ObjstoreError(
            f"{len(result.skipped)} files were not copied (listed above); the destination is consistent "
            "without them"
        )
    return 0


def _catch_up(ctx, where, progress, *, is_home: bool) -> None:
    """Bring this machine's index of the destination (if it has one) up to date with what was
    copied, so the next run there sees it at once: eval heads live in the journal only."""
    from objstore.repo import Repository, default_index_dir

    # --index-dir / $OBJSTORE_INDEX_DIR name the index of this command's own repository.
    index_dir = ctx.index_dir(where.url) if is_home else default_index_dir(where.url, ctx.cache_home())
    if not (index_dir / "data.mdb").exists():
        return  # nobody here uses it: no index is made for it
    with Repository.open(where.url, where.storage_options, index_dir=index_dir) as repo:
        # A full listing: the copied segments keep their (older) names, which a refresh that
        # lists from this index's marker would not reach.
        repo.refresh(progress, full=True)


def cmd_push(args, ctx) -> int:
    return _transfer(ctx, ctx.locate(), ctx.locate(args.remote), dry_run=args.dry_run, verb="push")


def cmd_pull(args, ctx) -> int:
    return _transfer(ctx, ctx.locate(args.remote), ctx.locate(), dry_run=args.dry_run, verb="pull", dst_is_home=True)


def cmd_sync(args, ctx) -> int:
    return _transfer(ctx, ctx.locate(args.src), ctx.locate(args.dst), dry_run=args.dry_run, verb="sync")


__all__ = ["register"]
