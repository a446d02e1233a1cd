"""`objstore graph ID`: an execution's or a call node's dataflow as DOT, Mermaid, SVG or HTML.

``dot`` and ``mermaid`` are text (paste into Graphviz or a Markdown viewer); ``svg`` and the
self-contained ``html`` report (job table + graph, opens from disk with no network) are laid out
by Graphviz's ``dot`` (Debian: ``apt-get install graphviz``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

INSTALL = "install Graphviz (Debian/Ubuntu: `apt-get install graphviz`; macOS: `brew install graphviz`)"


def register(sub) -> None:
    p = sub.add_parser("graph", help="draw an execution's or a call node's dataflow (dot, mermaid, svg, html)",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)  # fmt: skip
    p.add_argument("target", metavar="ID", help="an execution (or - / ~N), job or call node id, or a unique prefix")
    p.add_argument("--format", choices=("dot", "mermaid", "svg", "html"), default="dot",
                   help="dot and mermaid are text; svg and html need Graphviz's dot (default: dot)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--max-calls", type=int, default=None, metavar="N",
                   help="draw at most N call nodes (default 300)")
    p.set_defaults(func=cmd_graph)


def find_dot(environ) -> str | None:
    return environ.get("OBJSTORE_DOT") or shutil.which("dot")


def render_svg(dot_binary: str, source: str) -> str:
    from objstore.errors import ObjstoreError

    try:
        proc = subprocess.run([dot_binary, "-Tsvg"], input=source, capture_output=True, text=True, timeout=300)
    except OSError as exc:
        raise ObjstoreError(f"cannot run Graphviz's dot ({dot_binary}): {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise ObjstoreError(f"Graphviz's dot failed: {last}")
    return proc.stdout


def cmd_graph(args, ctx) -> int:
    from datetime import datetime

    from objstore.backend import Provenance
    from objstore.cli import UsageError
    from objstore.errors import ObjstoreError
    from objstore.query import open_query
    from objstore.query.graph import MAX_CALLS, picture, to_dot, to_html, to_mermaid

    if args.max_calls is not None and args.max_calls < 1:
        raise UsageError("--max-calls must be 1 or more")
    dot_binary = None
    if args.format in ("svg", "html"):
        dot_binary = find_dot(ctx.environ)
        if dot_binary is None:
            raise ObjstoreError(f"--format {args.format} needs Graphviz's `dot`, which is not installed: {INSTALL}; "
                                "or use --format dot | mermaid")  # fmt: skip
    from objstore.cli import no_gc

    with no_gc(), ctx.open_repo() as repo:
        q = open_query(Provenance(repo))
        kind, record_id = q.resolve_any(args.target)
        pic = picture(q, kind, record_id, max_calls=args.max_calls or MAX_CALLS)
        for problem in q.problems:
            ctx.warn(problem)
    if args.format == "mermaid":
        text = to_mermaid(pic)
    else:
        text = to_dot(pic)
        if dot_binary is not None:
            svg = render_svg(dot_binary, text)
            text = svg if args.format == "svg" else to_html(pic, svg, when=datetime.now().strftime("%Y-%m-%d %H:%M"))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        ctx.stderr.write(f"wrote {args.output} ({len(pic.nodes)} nodes)\n")
    else:
        ctx.stdout.write(text)
    return 0


__all__ = ["register", "cmd_graph", "find_dot", "render_svg"]
