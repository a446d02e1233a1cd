"""`objstore repl`: a Python prompt with the repository's call graph at hand.

    objstore repl                         interactive (code.interact)
    objstore repl -c 'print(query("-").job.call_node.value.preview)'

In scope: ``query(prefix_or_path)`` (objstore.query.navigate: executions, jobs, call nodes,
tasks, values and File paths as read-only objects), ``executions`` (the newest 20),
``last_exec``, ``graph`` (``graph.refresh()`` picks up new runs) and ``repo``. A stored value is
unpickled only by an explicit ``.value``.
"""

from __future__ import annotations

import sys

BANNER = """objstore repl on {url}
  query(id_prefix | - | ~N | path) -> Execution / Job / CallNode / Task / Value / File
  executions: the newest {n}; last_exec = executions[0]; graph.refresh() for new runs
  e.g. last_exec.job.call_node.arguments, job.task.source, value.produced_by, value.value (unpickles)"""


def register(sub) -> None:
    p = sub.add_parser("repl", help="a Python prompt to walk the call graph (query(...), .value, .parents, ...)",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)  # fmt: skip
    p.add_argument("-c", dest="code", metavar="CODE", help="run CODE instead of the interactive prompt")
    p.set_defaults(func=cmd_repl)


def namespace(graph) -> dict:
    executions = graph.executions()
    return {
        "query": graph.query,
        "executions": executions,
        "last_exec": executions[0] if executions else None,
        "graph": graph,
        "repo": graph.prov.repo,
    }


def cmd_repl(args, ctx) -> int:
    from objstore.backend import Provenance
    from objstore.errors import ObjstoreError
    from objstore.query.navigate import Graph

    with ctx.open_repo() as repo:
        prov = Provenance(repo)
        prov.refresh()
        graph = Graph(prov, cwd=str(ctx.cwd))
        scope = namespace(graph)
        if args.code is not None:
            try:
                exec(compile(args.code, "<objstore repl -c>", "exec"), scope)
            except ObjstoreError:
                raise  # one line, from main()
            except SystemExit as exc:
                return int(exc.code or 0) if not isinstance(exc.code, str) else 1
            except BaseException:
                import traceback

                kind, error, tb = sys.exc_info()
                # The user's code failed: show its traceback (only its own frames), as python -c does.
                ctx.stderr.write("".join(traceback.format_exception(kind, error, tb.tb_next if tb else None)))
                return 1
            return 0
        import code

        console = code.InteractiveConsole(scope)
        console.interact(banner=BANNER.format(url=repo.url, n=len(scope["executions"])), exitmsg="")
    return 0


__all__ = ["register", "cmd_repl"]
