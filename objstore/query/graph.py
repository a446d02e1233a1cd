"""A picture of an execution's or a call node's dataflow: DOT, Mermaid, and a self-contained HTML
report (a job table beside the graph Graphviz lays out).

Nodes are call nodes (boxes: task, hash, status; a cached job is dashed, a failed one red) and
the values between them (ellipses; Files as notes with their path). Edges: a value into the call
that took it (labelled with the argument), a call to the value it returned, and a call to the
calls it made (dotted). A value two calls share is one node, so the dataflow reads off the page.
Large executions are cut at ``MAX_CALLS`` call nodes (the picture says how many are left out).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

from objstore import model
from objstore.backend import MISSING
from objstore.errors import ObjectNotFound
from objstore.query.dataflow import task_arg_names
from objstore.query.log import LogQuery
from objstore.query.results import CACHED, FAILED, JobNode

MAX_CALLS = 300
LABEL_CHARS = 40


@dataclass
class GraphNode:
    id: str  # "c_<call hash>" or "v_<value hash>"
    kind: str  # "call", "value" or "file"
    label: str
    status: str = ""  # a call's job status (DONE, CACHED, FAILED, ...)
    title: str = ""  # the whole text (tooltips)


@dataclass
class GraphEdge:
    source: str
    target: str
    kind: str  # "arg", "result" or "child"
    label: str = ""


@dataclass
class Picture:
    title: str
    nodes: dict[str, GraphNode] = field(default_factory=dict)
    edges: list[GraphEdge] = field(default_factory=list)
    jobs: list[JobNode] = field(default_factory=list)
    left_out: int = 0  # call nodes not drawn (MAX_CALLS)


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Builder:
    def __init__(self, q: LogQuery, title: str, max_calls: int):
        self.q = q
        self.picture = Picture(title)
        self.max_calls = max_calls
        self.calls: list[str] = []

    def value(self, value_hash: str) -> str:
        node_id = f"v_{value_hash}"
        if node_id not in self.picture.nodes:
            info = self.q.value_info(value_hash)
            if info is None:
                node = GraphNode(node_id, "value", f"<missing {value_hash[:8]}>", title=value_hash)
            elif info.path is not None:
                node = GraphNode(node_id, "file", _short(info.path), title=f"File {info.path} ({value_hash})")
            else:
                node = GraphNode(node_id, "value", _short(info.preview), title=f"{info.type} {info.preview}")
            self.picture.nodes[node_id] = node
        return node_id

    def call(self, call_hash: str, status: str) -> bool:
        node_id = f"c_{call_hash}"
        if node_id in self.picture.nodes:
            node = self.picture.nodes[node_id]
            if status == FAILED or (node.status == CACHED and status != CACHED):
                node.status = status  # a call that also ran (or failed) is drawn as such
            return True
        if len(self.calls) >= self.max_calls:
            self.picture.left_out += 1
            return False
        doc = self.q.call_doc(call_hash)
        if doc is MISSING:
            self.picture.nodes[node_id] = GraphNode(node_id, "call", f"<unreadable {call_hash[:8]}>", status, call_hash)
            self.calls.append(call_hash)
            return True
        name = self.q.task_name(doc.get("task_hash"), doc.get("task_name"))
        self.picture.nodes[node_id] = GraphNode(node_id, "call", f"{name}\n{call_hash[:8]}", status,
                                                f"CallNode {call_hash} {name}")  # fmt: skip
        self.calls.append(call_hash)
        positional = task_arg_names(self.q.task_info(doc["task_hash"], fallback_name=name).source)
        for key, arg in doc.get("args", []):
            label = key if not key.isdigit() else positional[int(key)] if int(key) < len(positional) else f"#{key}"
            self.picture.edges.append(GraphEdge(self.value(arg["value_hash"]), node_id, "arg", label))
        self.picture.edges.append(GraphEdge(node_id, self.value(doc["value_hash"]), "result"))
        return True

    def child_edges(self) -> None:
        drawn = set(self.calls)
        for call_hash in self.calls:
            doc = self.q.call_doc(call_hash)
            if doc is MISSING:
                continue
            for child in doc.get("children", []):
                if child in drawn:
                    self.picture.edges.append(GraphEdge(f"c_{call_hash}", f"c_{child}", "child"))


def picture(q: LogQuery, kind: str, record_id: str, *, max_calls: int = MAX_CALLS) -> Picture:
    """The picture of an execution (every call node of its jobs) or a call node (its subtree)."""
    if kind == model.EXECUTION:
        tree = q.execution_tree(record_id)
        b = _Builder(q, f"Execution {record_id} {' '.join(tree.execution.args)}", max_calls)
        jobs = list(tree.root.walk()) if tree.root else []
        b.picture.jobs = jobs
        for job in jobs:
            if job.call_hash:
                b.call(job.call_hash, job.status)
    elif kind == model.CALL:
        info = q.call_info(record_id, detail=False)
        b = _Builder(q, f"CallNode {record_id} {info.task_name}", max_calls)
        todo, seen = [record_id], set()
        while todo:
            call_hash = todo.pop(0)
            if call_hash in seen:
                continue
            seen.add(call_hash)
            jobs = [n for n in (q.job_node(j) for j in q.jobs_of_call(call_hash)) if n is not None]
            b.picture.jobs.extend(jobs)
            status = jobs[-1].status if jobs else ""
            if b.call(call_hash, status):
                doc = q.call_doc(call_hash)
                todo.extend(doc.get("children", []) if doc is not MISSING else [])
    elif kind == model.JOB:
        node = q.job_node(record_id)
        if node is None or not node.call_hash:
            raise ObjectNotFound(f"job {record_id} has no call node yet: draw its execution instead")
        return picture(q, model.CALL, node.call_hash, max_calls=max_calls)
    else:
        raise ObjectNotFound(f"{record_id} is a {kind}: draw an execution, a job or a call node")
    b.child_edges()
    return b.picture


# -- DOT ----------------------------------------------------------------------------------------

_STATUS_STYLE = {
    "CACHED": 'style="rounded,dashed,filled" fillcolor="#eeeeee"',
    "FAILED": 'style="rounded,filled" fillcolor="#f8d0d0" color="#b00020"',
    "RUNNING": 'style="rounded,filled" fillcolor="#fff3c4"',
    "UNFINISHED": 'style="rounded,filled,dashed" fillcolor="#fff3c4"',
}


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(p: Picture) -> str:
    out = ["digraph objstore {", f"  label={_dot_text(p.title + _left_out(p))}; labelloc=t; rankdir=LR;",
           '  node [fontname="Helvetica" fontsize=10]; edge [fontname="Helvetica" fontsize=9];']  # fmt: skip
    for node in p.nodes.values():
        if node.kind == "call":
            style = _STATUS_STYLE.get(node.status, 'style="rounded,filled" fillcolor="#dbe9ff"')
            status = f"\\n[{node.status}]" if node.status else ""
            out.append(f"  {node.id} [id={node.id} shape=box {style} label={_dot_text(node.label)[:-1]}{status}\" "
                       f"tooltip={_dot_text(node.title)}];")  # fmt: skip
        elif node.kind == "file":
            out.append(f"  {node.id} [id={node.id} shape=note style=filled fillcolor=\"#e6f4e6\" "
                       f"label={_dot_text(node.label)} tooltip={_dot_text(node.title)}];")  # fmt: skip
        else:
            out.append(f"  {node.id} [id={node.id} shape=ellipse label={_dot_text(node.label)} "
                       f"tooltip={_dot_text(node.title)}];")  # fmt: skip
    for e in p.edges:
        if e.kind == "child":
            out.append(f"  {e.source} -> {e.target} [style=dotted color=\"#888888\" arrowhead=open];")
        elif e.kind == "arg":
            out.append(f"  {e.source} -> {e.target} [label={_dot_text(e.label)}];")
        else:
            out.append(f"  {e.source} -> {e.target};")
    out.append("}")
    return "\n".join(out) + "\n"


def _left_out(p: Picture) -> str:
    return f" ({p.left_out} more call nodes not drawn)" if p.left_out else ""


# -- Mermaid ------------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    return '"' + html.escape(text, quote=True).replace("\n", "<br/>") + '"'


def to_mermaid(p: Picture) -> str:
    out = ["flowchart LR", f"  %% {p.title}{_left_out(p)}"]
    for node in p.nodes.values():
        label = _mermaid_text(node.label + (f"\n[{node.status}]" if node.status else ""))
        if node.kind == "call":
            out.append(f"  {node.id}[{label}]")
        elif node.kind == "file":
            out.append(f"  {node.id}[/{label}/]")
        else:
            out.append(f"  {node.id}({label})")
        if node.kind == "call" and node.status in ("CACHED", "FAILED"):
            out.append(f"  class {node.id} {node.status.lower()}")
    for e in p.edges:
        if e.kind == "child":
            out.append(f"  {e.source} -.-> {e.target}")
        elif e.kind == "arg" and e.label:
            out.append(f"  {e.source} -- {_mermaid_text(e.label)} --> {e.target}")
        else:
            out.append(f"  {e.source} --> {e.target}")
    out.append("  classDef cached stroke-dasharray: 5 5,fill:#eeeeee")
    out.append("  classDef failed fill:#f8d0d0,stroke:#b00020")
    return "\n".join(out) + "\n"


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.2em} .meta{color:#666;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} tr.hit td{background:#fff3c4}
td.FAILED{color:#b00020;font-weight:bold} td.CACHED{color:#666}
#graph{border:1px solid #ddd;overflow:auto;max-height:80vh} #graph svg{max-width:none}
g.node.hit polygon,g.node.hit ellipse,g.node.hit path{stroke:#e69500;stroke-width:3px}
input{padding:4px;width:20em}
"""

_SCRIPT = """
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll('#jobs tbody tr'));
  var nodes = Array.prototype.slice.call(document.querySelectorAll('#graph g.node'));
  function mark(callId) {
    rows.forEach(function (r) { r.classList.toggle('hit', r.dataset.call === callId); });
    nodes.forEach(function (n) { n.classList.toggle('hit', n.id === callId); });
  }
  nodes.forEach(function (n) { n.addEventListener('click', function () { mark(n.id); }); });
  rows.forEach(function (r) { r.addEventListener('click', function () { mark(r.dataset.call); }); });
  var filter = document.getElementById('filter');
  filter.addEventListener('input', function () {
    var text = filter.value.toLowerCase();
    rows.forEach(function (r) { r.style.display = r.textContent.toLowerCase().indexOf(text) < 0 ? 'none' : ''; });
  });
  document.getElementById('count').textContent = rows.length + ' jobs, ' + nodes.length + ' nodes';
})();
"""


def to_html(p: Picture, svg: str, *, when: str = "") -> str:
    """A page that opens from disk with no network: the job table and the graph (Graphviz's SVG
    inline), click a node or a row to find the other."""
    svg = svg[svg.find("<svg"):] if "<svg" in svg else svg  # drop the XML prolog / doctype
    esc = html.escape
    rows = []
    for job in p.jobs:
        call_id = f"c_{job.call_hash}" if job.call_hash else ""
        rows.append(
            f'<tr data-call="{esc(call_id)}"><td><code>{esc(job.id[:8])}</code></td>'
            f'<td class="{esc(job.status)}">{esc(job.status)}</td><td>{esc(job.task_name)}</td>'
            f"<td>{esc(job.args)}</td><td>{esc(job.start_time or '')}</td>"
            f"<td>{'' if job.duration is None else f'{job.duration:.3f}s'}</td></tr>"
        )
    # Raw text inside <script>: no entity is decoded there, so only "</" needs escaping.
    meta = json.dumps({"title": p.title, "nodes": len(p.nodes), "left_out": p.left_out}).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(p.title)}</title>
<style>{_CSS}</style>
<script type="application/json" id="objstore-graph">{meta}</script>
</head><body>
<h1>{esc(p.title)}</h1>
<p class="meta">objstore graph{esc(' · ' + when if when else '')}{esc(_left_out(p))} · <span id="count"></span></p>
<input id="filter" type="search" placeholder="filter jobs (task, status, args)">
<table id="jobs"><thead><tr><th>job</th><th>status</th><th>task</th><th>arguments</th><th>start</th><th>duration</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<div id="graph">{svg}</div>
<script>{_SCRIPT}</script>
</body></html>
"""


__all__ = ["Picture", "GraphNode", "GraphEdge", "picture", "to_dot", "to_mermaid", "to_html", "MAX_CALLS"]
