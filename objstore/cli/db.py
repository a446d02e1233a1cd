"""Format versions and settings: db info | versions | upgrade [V] | downgrade V, config."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "db",
        help="the repository's format version: info, versions, upgrade, downgrade",
        description="Format versions (redun's `db` commands). A repository on this machine's own disk is "
                    "upgraded whenever objstore opens it; a shared one (a bucket, a network mount) only by "
                    "`objstore db upgrade`, so upgrade it once every client runs an objstore that reads the "
                    "new version. A new minor never breaks clients of the same major.",
    )
    dbsub = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    q = dbsub.add_parser("info", help="the repository's version, the range this objstore reads, compatible or not")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=cmd_info)
    q = dbsub.add_parser("versions", help="every format version and what it changed")
    q.set_defaults(func=cmd_versions)
    q = dbsub.add_parser("upgrade", help="migrate to VERSION (default: the newest this objstore writes)")
    q.add_argument("version", nargs="?", metavar="VERSION", help="e.g. 2.1 (default: latest)")
    q.add_argument("--check", action="store_true", help="only say what the upgrade would do")
    q.set_defaults(func=cmd_upgrade)
    q = dbsub.add_parser("downgrade", help="migrate down to VERSION, rewriting what it needs (stop every writer first)")
    q.add_argument("version", metavar="VERSION", help="e.g. 2.0")
    q.add_argument("--check", action="store_true", help="only say what the downgrade would do")
    q.set_defaults(func=cmd_downgrade)

    p = sub.add_parser(
        "config",
        help="show or change repository settings (value store, packing, compaction)",
        description="Repository settings live in objstore.json, so every client agrees (format 2.1). "
                    "value_store_url: values of value_store_min_size bytes or more go to this second URL "
                    "(values already there stay readable wherever the settings point later); pack: false "
                    "writes the plain objects/ab/cdef fanout only; compact_threshold: compact the journal "
                    "once this many segments are not covered by a checkpoint (0: only by `objstore gc`); "
                    "journal_skew: a refresh lists the journal from the newest segment its index has seen "
                    "minus this many seconds (the clock skew tolerated between writers); journal_full_listing: "
                    "seconds between full listings of the journal, which pick up a segment older than that "
                    "(0: list all of it on every refresh). "
                    "Clients read settings when they open the repository.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a setting (none: show them all)")
    p.add_argument("value", nargs="?", metavar="VALUE", help="its new value (none: show it)")
    p.add_argument("--unset", action="store_true", help="back to the default")
    p.set_defaults(func=cmd_config)


def _version(text: str):
    from objstore.cli import UsageError
    from objstore.errors import FormatError
    from objstore.format import parse_version

    try:
        return parse_version(text)
    except FormatError as exc:
        raise UsageError(str(exc)) from None


def cmd_info(args, ctx) -> int:
    from objstore.cli import bad_url_is_usage
    from objstore.maint.versions import info

    url = ctx.repo_url()
    with bad_url_is_usage(url):
        found = info(url, ctx.storage_options())
    if args.json:
        ctx.stdout.write(json.dumps(found.to_json(), indent=2) + "\n")
    else:
        ctx.stdout.write("\n".join(found.lines()) + "\n")
    return 0 if found.compatible else 1


def cmd_versions(args, ctx) -> int:
    from objstore.maint.versions import info, table

    current = None
    try:
        url = ctx.repo_url()
        current = info(url, ctx.storage_options()).version
    except Exception:  # noqa: BLE001 - the table stands without a repository
        current = None
    rows = table(current)
    width = max(len(r[1]) for r in rows)
    for mark, version, summary, how in rows:
        ctx.stdout.write(f"{mark} {version:<{width}}  {summary}\n{' ' * (width + 4)}{how}\n")
    return 0


def _plan_lines(current, target) -> list[str]:
    from objstore import format as fmt

    out = []
    for source, dest in fmt.path(current, target):
        step = fmt.KNOWN[max(source, dest)]
        out.append(f"{fmt.show(source)} -> {fmt.show(dest)}: {step.upgrade if dest > source else step.downgrade}")
    return out


def cmd_upgrade(args, ctx) -> int:
    from objstore import format as fmt
    from objstore.repo.migrate import migrate

    target = _version(args.version) if args.version else fmt.FORMAT_VERSION
    with ctx.open_repo(migrate=False, auto_compact=False) as repo:
        current = fmt.version_of(repo.format)
        if current >= target:
            note = f" (upgraded from {fmt.show(repo.format['upgraded_from'])})" if repo.format.get("upgraded_from") else ""
            ctx.stdout.write(f"repository format {fmt.show(current)}{note}: up to date"
                             + ("" if target == fmt.FORMAT_VERSION else f" for {fmt.show(target)}") + "\n")
            return 0
        if args.check:
            ctx.stdout.write("\n".join(_plan_lines(current, target)) + "\n")
            return 0
        for line in migrate(repo, target, progress=ctx.progress("upgrade")):
            ctx.stdout.write(line + "\n")
        ctx.stdout.write(f"upgraded repository format {fmt.show(current)} -> {fmt.show(target)}\n")
    return 0


def cmd_downgrade(args, ctx) -> int:
    from objstore import format as fmt
    from objstore.cli import UsageError
    from objstore.repo.migrate import migrate

    target = _version(args.version)
    with ctx.open_repo(migrate=False, auto_compact=False) as repo:
        current = fmt.version_of(repo.format)
        if target >= current:
            raise UsageError(f"{fmt.show(target)} is not below the repository's {fmt.show(current)}: "
                             "use `objstore db upgrade`")  # fmt: skip
        if args.check:
            ctx.stdout.write("\n".join(_plan_lines(current, target)) + "\n")
            return 0
        for line in migrate(repo, target, progress=ctx.progress("downgrade")):
            ctx.stdout.write(line + "\n")
        ctx.stdout.write(f"downgraded repository format {fmt.show(current)} -> {fmt.show(target)}\n")
        if repo.fs is not None and _local(repo):
            ctx.stdout.write("note: a repository on this machine's own disk is upgraded again the next time this "
                             "objstore opens it; hand it to the older objstore now\n")  # fmt: skip
    return 0


def _local(repo) -> bool:
    from objstore.repo.repository import migrates_on_open

    return migrates_on_open(repo.fs, repo.root)


def cmd_config(args, ctx) -> int:
    from objstore import format as fmt
    from objstore.cli import UsageError

    with ctx.open_repo(auto_compact=False) as repo:
        settings = fmt.settings_of(repo.format, repo.url).to_doc()
        if args.name is None:
            if not fmt.allows(repo.format, fmt.SETTINGS):
                ctx.stdout.write(f"repository format {fmt.show(repo.format['version'])} has no settings "
                                 f"(they need {fmt.show(fmt.SETTINGS)})\n")  # fmt: skip
            for name, value in settings.items():
                ctx.stdout.write(f"{name} = {_shown(value)}\n")
            return 0
        if args.name not in fmt.SETTING_NAMES:
            raise UsageError(f"unknown setting {args.name!r} (settings: {', '.join(fmt.SETTING_NAMES)})")
        if args.value is None and not args.unset:
            ctx.stdout.write(f"{_shown(settings[args.name])}\n")
            return 0
        try:
            value = fmt.parse_setting(args.name, None if args.unset else args.value)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if args.name == "value_store_url" and value:
            value = _store_url(ctx, value)
        repo.write_format(fmt.with_setting(repo.reload_format(), args.name, value))
        ctx.stdout.write(f"{args.name} = {_shown(value)}\n")
    return 0


def _store_url(ctx, value: str) -> str:
    from objstore.cli import bad_url_is_usage
    from objstore.fs import open_url

    if "://" not in value:
        value = str((ctx.cwd / value).resolve())  # every client must read the same place
    with bad_url_is_usage(value):
        open_url(value, None)
    return value


def _shown(value) -> str:
    return "(none)" if value is None else json.dumps(value) if not isinstance(value, str) else value
