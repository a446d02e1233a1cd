"""Repository commands: init, reindex, upgrade (an alias of `objstore db upgrade`)."""

from __future__ import annotations

import re
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("init", help="create a repository (default: ./.objstore)")
    p.add_argument("url", nargs="?", metavar="URL",
                   help="where (a path or a URL; default: --repo, $OBJSTORE_REPO, else ./.objstore)")
    p.add_argument("--index-dir", dest="init_index_dir", metavar="DIR",
                   help="local index directory (default under ~/.cache/objstore)")
    p.add_argument("--redun", nargs="?", const=".redun", default=None, metavar="CONFIG_DIR",
                   help="also point redun at this repository: write [scheduler] setup_scheduler and "
                        "[backend] objstore_url into CONFIG_DIR/redun.ini (default: ./.redun); "
                        "other settings in an existing redun.ini are kept")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("reindex", help="rebuild the local index from journal/ (or a full scan)")
    p.add_argument("--full-scan", action="store_true",
                   help="also scan every object and eval head (slow; for a damaged journal)")
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser(
        "upgrade",
        help="the same as `objstore db upgrade` (kept for scripts written for format 2)",
        description="Migrate the repository to the format version this objstore writes (an alias of "
                    "`objstore db upgrade`; see `objstore db versions`). A shared (remote) repository is "
                    "never upgraded implicitly: run this once every worker using it has an objstore that "
                    "reads the new format.",
    )
    p.add_argument("--check", action="store_true", help="only print the version and what an upgrade would do")
    p.set_defaults(func=cmd_upgrade)


def cmd_init(args, ctx) -> int:
    from objstore.cli import bad_url_is_usage
    from objstore.errors import RepositoryExists
    from objstore.repo import Repository

    url = args.url or args.repo or ctx.environ.get("OBJSTORE_REPO") or str(ctx.cwd / ".objstore")
    if "://" not in url:
        url = str((ctx.cwd / url).resolve())  # redun.ini must not depend on where redun is run
    index_dir = args.init_index_dir or ctx.index_dir(url)
    try:
        with bad_url_is_usage(url):
            repo = Repository.init(url, ctx.storage_options(), index_dir=index_dir)
        with repo:
            adopted = len(repo.index.segments())
            if adopted:  # objstore.json was lost: the data there is this repository's now
                ctx.stdout.write(f"Initialized objstore repository at {url} over the data already there "
                                 f"({adopted} journal segments indexed; repo_id {repo.repo_id})\n")
            else:
                ctx.stdout.write(f"Initialized empty objstore repository at {url} (repo_id {repo.repo_id})\n")
    except RepositoryExists:
        if args.redun is None:
            raise
        ctx.stdout.write(f"Using the existing objstore repository at {url}\n")
    if args.redun is not None:
        ini = write_redun_config(ctx.cwd / args.redun, url, args.init_index_dir)
        ctx.stdout.write(f"redun now records into it: {ini} "
                         "([scheduler] setup_scheduler = objstore.redun::setup_scheduler)\n")
    return 0


def write_redun_config(config_dir: Path, url: str, index_dir: str | None) -> Path:
    """Point redun.ini at the repository, keeping everything else in it, comments included.

    Sets ``[scheduler] setup_scheduler`` (redun records through objstore), ``[backend]
    objstore_url`` and ``db_uri = objstore+…`` (what redun's own `db` / push / pull commands build
    their backend from: objstore's read-only SQL replica), and ``objstore_index_dir`` when given.
    The file is edited as text, not re-written by configparser, which would drop its comments; a
    db_uri it replaces is kept as a comment.
    """
    from objstore.redun.config import to_uri

    config_dir.mkdir(parents=True, exist_ok=True)
    ini = config_dir / "redun.ini"
    text = ini.read_text() if ini.exists() else ""
    index = str(Path(index_dir).resolve()) if index_dir else None
    settings = [
        ("scheduler", "setup_scheduler", "objstore.redun::setup_scheduler"),
        ("backend", "objstore_url", url),
        ("backend", "db_uri", to_uri(url, index)),
    ]
    if index:
        settings.append(("backend", "objstore_index_dir", index))
    for section, key, value in settings:
        text = set_ini_value(text, section, key, value)
    tmp = ini.with_name(ini.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(ini)
    return ini


_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")


def set_ini_value(text: str, section: str, key: str, value: str) -> str:
    """``text`` (an ini file) with ``key = value`` in ``[section]``: an existing line for the key
    is replaced (a different old value stays as a comment above it), else the line goes after the
    section's last setting; a missing section is appended. Everything else is kept as it was."""
    lines = text.splitlines()
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*[=:]")
    start = None
    for i, line in enumerate(lines):
        found = _SECTION.match(line)
        if found and found.group(1).strip() == section:
            start = i
            break
    new = f"{key} = {value}"
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [f"[{section}]", new]
        return "\n".join(lines) + "\n"
    end = next((j for j in range(start + 1, len(lines)) if _SECTION.match(lines[j])), len(lines))
    last_setting = start
    for j in range(start + 1, end):
        stripped = lines[j].strip()
        if key_re.match(lines[j]):
            old = re.split(r"[=:]", lines[j], maxsplit=1)[1].strip()
            if old == value:
                return text if text.endswith("\n") else text + "\n"
            if key == "db_uri" and old:
                lines[j : j + 1] = [f"# {lines[j].strip()}   (replaced by `objstore init --redun`)", new]
            else:
                lines[j] = new
            return "\n".join(lines) + "\n"
        if stripped and not stripped.startswith(("#", ";")):
            last_setting = j
    lines.insert(last_setting + 1, new)
    return "\n".join(lines) + "\n"


def cmd_reindex(args, ctx) -> int:
    with ctx.open_repo() as repo:
        progress = ctx.progress("reindex")
        stats = repo.reindex(full_scan=args.full_scan, progress=progress)
    line = f"reindexed {stats['segments']} journal segments"
    if args.full_scan:
        line += f", {stats['objects']} objects, {stats['evals']} eval heads"
        if stats.get("corrupt"):
            line += f" ({stats['corrupt']} corrupt objects skipped)"
        if stats.get("damaged_packs"):
            line += (f" ({stats['damaged_packs']} pack(s) with a damaged table of contents: their "
                     "entries were recovered from the packs themselves)")
    ctx.stdout.write(f"{line} in {stats['seconds']:.2f}s\n")
    return 0


def cmd_upgrade(args, ctx) -> int:
    from objstore.cli.db import _plan_lines
    from objstore.format import FORMAT_VERSION, version_of
    from objstore.format import show as _version
    from objstore.repo.migrate import migrate

    with ctx.open_repo() as repo:
        current = repo.format["version"]
        if tuple(current[:2]) >= FORMAT_VERSION:
            note = f" (upgraded from {_version(repo.format['upgraded_from'])})" if repo.format.get("upgraded_from") else ""
            ctx.stdout.write(f"repository format {_version(current)}{note}: up to date\n")
            return 0
        if args.check:
            ctx.stdout.write(f"repository format {_version(current)}: `objstore upgrade` would make it "
                             f"{_version(FORMAT_VERSION)}:\n")
            ctx.stdout.write("".join(f"  {line}\n" for line in _plan_lines(version_of(repo.format), FORMAT_VERSION)))
            return 0
        for line in migrate(repo, FORMAT_VERSION, progress=ctx.progress("upgrade")):
            ctx.stdout.write(f"  {line}\n")
        ctx.stdout.write(f"upgraded repository format {_version(current)} -> {_version(FORMAT_VERSION)}\n")
    return 0
