"""Named remotes: objstore repo add / list / remove."""

from __future__ import annotations

import json

DESCRIPTION = """\
Named remotes: short names for other repositories, usable wherever a repository is taken
(`objstore push NAME`, `objstore pull NAME`, `objstore sync NAME OTHER`, `--repo NAME`).
They are kept in this repository's config.json, which sync never copies (as git keeps
remotes out of a push). Storage options are stored as given, in plain text: prefer the
environment or the cloud SDK's configuration for secrets.
"""


def register(sub) -> None:
    import argparse

    p = sub.add_parser("repo", help="named remotes: add, list, remove", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="repo_action", metavar="ACTION", required=True)

    a = actions.add_parser("add", help="name another repository")
    a.add_argument("name", metavar="NAME", help="the remote's name (letters, digits, '_', '-', '.')")
    a.add_argument("url", metavar="URL", help="its URL or path (s3://…, gs://…, az://…, memory://…, a path)")
    a.add_argument("--storage-options", metavar="JSON",
                   help="fsspec options for it, a JSON object (endpoints, credentials, …)")
    a.set_defaults(func=cmd_add)

    a = actions.add_parser("list", help="list the remotes")
    a.add_argument("-v", "--verbose", action="store_true", help="also name their storage options (not the values)")
    a.set_defaults(func=cmd_list)

    a = actions.add_parser("remove", help="forget a remote (its repository is not touched)")
    a.add_argument("name", metavar="NAME")
    a.set_defaults(func=cmd_remove)


def _home(ctx):
    """(fs, root) of the repository whose remotes these are (an existing repository)."""
    from objstore.cli import bad_url_is_usage
    from objstore.sync.endpoint import open_endpoint

    where = ctx.locate()
    with bad_url_is_usage(where.url):
        side = open_endpoint(where.url, where.storage_options, role="repository")
    return side.fs, side.root, where.url


def cmd_add(args, ctx) -> int:
    from objstore.cli import UsageError, bad_url_is_usage
    from objstore.fs import open_url
    from objstore.sync.remotes import Remote, add_remote, check_name

    try:
        check_name(args.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = None
    if args.storage_options is not None:
        try:
            options = json.loads(args.storage_options)
        except ValueError as exc:
            raise UsageError(f"--storage-options is not valid JSON: {exc}") from None
        if not isinstance(options, dict):
            raise UsageError("--storage-options must be a JSON object")
    url = args.url
    if "://" not in url:
        url = str((ctx.cwd / url).resolve())  # a remote must not depend on where it is used from
    with bad_url_is_usage(url):
        open_url(url, options)  # a scheme objstore cannot use is refused now, not at the first push
    fs, root, home = _home(ctx)
    if not add_remote(fs, root, Remote(args.name, url, options)):
        raise UsageError(f"remote {args.name!r} already exists (`objstore repo remove {args.name}` first)")
    ctx.stdout.write(f"added remote {args.name} -> {url}\n")
    return 0


def cmd_list(args, ctx) -> int:
    from objstore.sync.remotes import list_remotes

    fs, root, _ = _home(ctx)
    for remote in list_remotes(fs, root):
        line = f"{remote.name}\t{remote.url}"
        if args.verbose and remote.storage_options:
            line += f"\t(storage options: {', '.join(sorted(remote.storage_options))})"
        ctx.stdout.write(line + "\n")
    return 0


def cmd_remove(args, ctx) -> int:
    from objstore.cli import UsageError
    from objstore.sync.remotes import remove_remote

    fs, root, _ = _home(ctx)
    if not remove_remote(fs, root, args.name):
        raise UsageError(f"no remote named {args.name!r} (see `objstore repo list`)")
    ctx.stdout.write(f"removed remote {args.name}\n")
    return 0


__all__ = ["register"]
