"""The layering of README's design section / docs/contracts.md, checked by parsing every import.

Keep the data below in step with the architecture; the checker underneath never needs to change.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------- layer map
# objstore's layers, lowest first. A module may import objstore modules of its own layer (e.g.
# objstore.backend.cache -> objstore.backend.core) or of an earlier entry, never of a later one
# nor of a sibling in the same entry (redun, sync and query stay independent of each other).
# A layer is the first component under objstore/: a module objstore/x.py or a package objstore/x/.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("missing",),
    ("ids",),
    ("hashing",),
    ("codec",),
    ("layout",),
    ("pack",),
    ("format",),
    ("model",),
    ("fs",),
    ("store",),
    ("index",),
    ("repo",),
    ("backend",),
    ("redun", "sync", "maint", "query"),
    ("cli",),
]
# No I/O here. objstore/__init__.py counts as pure too and may import nothing from objstore:
# every `import objstore.codec` runs it, so anything it pulled in would leak into pure code.
PURE = {"errors", "missing", "ids", "hashing", "codec", "layout", "pack", "format", "model"}
# Layers that may not reach past the one they build on: the backend knows no paths, no
# filesystems and no index (it asks the repository), so the layout can change under it.
FORBIDDEN: dict[str, set[str]] = {"backend": {"fs", "store", "index", "layout"}}
# Top-level modules a pure module may not import (filesystems, databases, processes, network,
# cloud SDKs, dynamic import that would hide all of the above).
IO_MODULES = {
    "fsspec", "lmdb", "redun", "refs", "s3fs", "gcsfs", "adlfs", "boto3", "botocore", "aiobotocore",
    "azure", "google", "os", "pathlib", "shutil", "subprocess", "socket", "tempfile", "glob",
    "fcntl", "mmap", "sqlite3", "asyncio", "urllib", "http", "requests", "aiohttp", "importlib",
    "multiprocessing", "select", "signal", "ssl",
}  # fmt: skip
REFS_FIRST_LAYER = "repo"  # the top-level refs package may be imported from here on down
REDUN_LAYERS = {"redun"}  # the only objstore code that may import the redun package
ENV_LAYERS = {"cli"}  # the only objstore code that may read or change os.environ, besides:
# the XDG cache-home rule, which every process (CLI, library, redun adapter) must apply alike;
# and the redun adapter's settings: redun, not objstore's CLI, starts those processes (`redun run`,
# redun's CLI, its SQLAlchemy dialect), so $OBJSTORE_STORAGE_OPTIONS / $OBJSTORE_INDEX_DIR reach
# them only there (the same variables the CLI reads).
ENV_MODULES = {"objstore.repo.index_dir", "objstore.redun.config"}
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("objstore", "refs")  # top-level packages whose sources are checked
# ---------------------------------------------------------------------------------------------

RANK = {layer: rank for rank, group in enumerate(LAYERS) for layer in group}
PACKAGE_RANK = -1  # objstore/__init__.py


@dataclass(frozen=True)
class Source:
    module: str  # dotted name, e.g. "objstore.backend.core"
    is_package: bool  # an __init__.py
    text: str
    path: str = "<synthetic>"


def layer_of(module: str) -> str | None:
    """'objstore.backend.core' -> 'backend'; '' for the objstore package itself."""
    parts = module.split(".")
    if parts[0] != "objstore":
        return None
    return parts[1] if len(parts) > 1 else ""


def rank_of(layer: str) -> int | None:
    return PACKAGE_RANK if layer == "" else RANK.get(layer)


def resolve(source: Source, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Absolute dotted names of what an import statement imports."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = source.module.split(".")
        if not source.is_package:
            package = package[:-1]
        if node.level > 1:
            package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    targets = []
    for alias in node.names:
        # `from objstore import codec` imports the module objstore.codec; `from objstore import
        # __version__` only reads the package. A name that is a known layer is a module.
        candidate = f"{base}.{alias.name}"
        if base == "objstore" and rank_of(alias.name) is not None:
            targets.append(candidate)
        elif (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or (
            ROOT / Path(*candidate.split("."))
        ).is_dir():
            targets.append(candidate)
        else:
            targets.append(base)
    return targets


def env_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """os.environ / os.getenv / os.putenv ... however os was imported (aliases included)."""
    os_names = {"os"}
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "os" and alias.asname:
                    os_names.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "posix", "nt"):
            for alias in node.names:
                if alias.name in ENV_NAMES:
                    hits.append((node.lineno, f"from {node.module} import {alias.name}"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENV_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            hits.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return hits


def check_source(source: Source) -> list[str]:
    """Every layering violation in one module, as readable messages."""
    tree = ast.parse(source.text, filename=source.path)
    where = f"{source.path} ({source.module})"
    top = source.module.split(".")[0]
    layer = layer_of(source.module)
    problems: list[str] = []

    if top == "objstore":
        rank = rank_of(layer)
        if rank is None:
            return [f"{where}: layer {layer!r} is not in the layer map at the top of {__file__}"]
        pure = layer in PURE or layer == ""
    else:
        rank, pure = None, False

    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for target in resolve(source, node):
            head = target.split(".")[0]
            say = f"{where}:{node.lineno}: imports {target}"
            if head == "redun" and layer not in REDUN_LAYERS:
                problems.append(f"{say}: only objstore.redun may import redun")
            if top == "refs":
                if head == "objstore":
                    problems.append(f"{say}: refs must import nothing from objstore")
                continue
            if head == "refs" and rank < RANK[REFS_FIRST_LAYER]:
                problems.append(f"{say}: refs may be imported from the {REFS_FIRST_LAYER} layer on")
            if pure and head in IO_MODULES:
                problems.append(f"{say}: {layer or 'objstore/__init__'} is pure (no I/O imports)")
            if head == "objstore" and target != "objstore":
                target_layer = layer_of(target)
                target_rank = rank_of(target_layer)
                if target_rank is None:
                    problems.append(f"{say}: {target_layer!r} is not in the layer map")
                elif target_layer != layer and target_rank >= rank:
                    problems.append(
                        f"{say}: layer {layer or 'objstore/__init__'} may not import "
                        f"layer {target_layer} (same level or later)"
                    )
                elif target_layer in FORBIDDEN.get(layer or "", ()):
                    problems.append(f"{say}: layer {layer} may not import layer {target_layer} (it asks objstore.repo)")

    if layer not in ENV_LAYERS and source.module not in ENV_MODULES:
        for lineno, what in env_reads(tree):
            problems.append(f"{where}:{lineno}: {what}: only objstore/cli/ reads the environment")
    return problems


def tree_sources() -> list[Source]:
    sources = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            sources.append(Source(".".join(parts), is_package, path.read_text(), str(rel)))
    return sources


# ------------------------------------------------------------------------------------- tests


def test_the_tree_keeps_its_layers():
    sources = tree_sources()
    modules = {s.module for s in sources}
    # The checker must actually be looking at the project, or passing would mean nothing.
    assert {"objstore", "objstore.errors", "objstore.ids", "objstore.codec", "refs"} <= modules
    problems = [p for source in sources for p in check_source(source)]
    assert not problems, "\n".join(problems)


def test_the_layer_map_is_consistent():
    names = [layer for group in LAYERS for layer in group]
    assert len(names) == len(set(names))
    assert PURE <= set(names) and REDUN_LAYERS <= set(names) and ENV_LAYERS <= set(names)
    assert max(RANK[p] for p in PURE) < min(RANK[n] for n in set(names) - PURE)


def _check(module: str, text: str, *, is_package: bool = False) -> list[str]:
    return check_source(Source(module, is_package, text))


@pytest.mark.parametrize(
    "module,text,expected",
    [
        # pure modules doing I/O
        ("objstore.codec", "import os\n", "pure"),
        ("objstore.hashing", "from pathlib import Path\n", "pure"),
        ("objstore.model.job", "import fsspec.implementations.local\n", "pure"),
        ("objstore.layout", "import os\n", "pure"),
        ("objstore.format", "from pathlib import Path\n", "pure"),
        ("objstore.ids", "def f():\n    import lmdb\n", "pure"),  # lazy imports count too
        ("objstore.errors", "import subprocess, json\n", "pure"),
        ("objstore.codec", "import s3fs\n", "pure"),
        ("objstore.model", "import importlib\n", "pure"),
        ("objstore", "import os\n", "pure"),
        # importing a later (or sibling) layer
        ("objstore.codec", "from objstore import store\n", "may not import layer store"),
        ("objstore.codec", "from objstore.model import derive_entries\n", "layer model"),
        ("objstore.pack", "from objstore.format import check\n", "layer format"),
        ("objstore.model.value", "from objstore.store import open_store\n", "layer store"),
        ("objstore.errors", "from .ids import Hash\n", "layer ids"),
        ("objstore.store", "from objstore.index import Index\n", "layer index"),
        ("objstore.index", "import objstore.repo\n", "layer repo"),
        ("objstore.backend.cache", "from ..repo import Repository\n", ""),  # allowed: see below
        ("objstore.repo", "from objstore.backend import Core\n", "layer backend"),
        ("objstore.backend.core", "from objstore.redun import RedunBackend\n", "layer redun"),
        ("objstore.sync", "from objstore.query import log\n", "layer query"),
        ("objstore.maint.fsck", "from objstore.sync import transfer\n", "layer sync"),
        ("objstore.query.log", "from objstore.redun import ObjstoreBackend\n", "layer redun"),
        ("objstore.backend.values", "from objstore.store import ObjectStore\n", "asks objstore.repo"),
        ("objstore.backend.core", "from objstore.index import MAX_KEY_BYTES\n", "asks objstore.repo"),
        ("objstore.backend.handles", "from objstore import layout\n", "asks objstore.repo"),
        ("objstore.backend.jobs", "import objstore.fs.local\n", "asks objstore.repo"),
        ("objstore.repo.journal", "import os\nx = os.environ['HOME']\n", "environment"),
        ("objstore.redun.backend", "from objstore.cli import main\n", "layer cli"),
        ("objstore", "from objstore.codec import encode\n", "layer codec"),
        ("objstore", "from . import repo\n", "layer repo"),
        ("objstore.nothere", "x = 1\n", "not in the layer map"),
        # refs
        ("refs.local", "from objstore.errors import StorageError\n", "refs must import nothing"),
        ("refs", "import objstore\n", "refs must import nothing"),
        ("objstore.store", "import refs\n", "refs may be imported"),
        ("objstore.index", "from refs import MISSING\n", "refs may be imported"),
        # redun
        ("objstore.backend.values", "from redun.value import TypeRegistry\n", "only objstore.redun"),
        ("objstore.sync", "import redun\n", "only objstore.redun"),
        ("refs.s3", "from redun import Scheduler\n", "only objstore.redun"),
        # environment
        ("objstore.repo", "import os\nx = os.environ.get('HOME')\n", "environment"),
        ("objstore.fs", "import os as _o\nx = _o.getenv('HOME')\n", "environment"),
        ("objstore.redun.backend", "from os import environ\n", "environment"),
        ("objstore.store", "import os\nos.putenv('A', 'b')\n", "environment"),
        ("refs.local", "import os\nv = dict(os.environ)\n", "environment"),
    ],
)
def test_the_checker_catches_violations(module, text, expected):
    problems = _check(module, text, is_package=module in ("objstore", "refs", "objstore.backend"))
    if expected:
        assert problems and any(expected in p for p in problems), problems
    else:
        assert problems == []


@pytest.mark.parametrize(
    "module,text",
    [
        ("objstore.codec", "import json, re, threading\nimport zstandard\nfrom objstore.errors import CorruptObject\n"),
        ("objstore.model.call", "from objstore import hashing\nfrom objstore.codec import canonical_json\n"),
        ("objstore.layout", "import re\nimport datetime\nfrom objstore.ids import fanout_path\n"),
        ("objstore.repo.index_dir", "import os\nx = os.environ.get('XDG_CACHE_HOME')\n"),
        ("objstore.backend.core", "from objstore.repo import Repository\nfrom objstore import model\n"),
        ("objstore.hashing", "from . import ids\nimport hashlib\n"),
        ("objstore", "__version__ = '1'\n"),
        ("objstore.backend.cache", "from objstore.backend.core import Core\nfrom .calls import Calls\n"),
        ("objstore.store", "import os\nfrom objstore import fs, codec\n"),
        ("objstore.index", "from objstore.missing import MISSING\nimport lmdb, os\n"),
        ("objstore.repo", "import refs\nfrom objstore import __version__\n"),
        ("objstore.redun.backend", "from redun.task import Task\nfrom objstore.backend import Core\n"),
        ("objstore.cli", "import os\nurl = os.environ.get('OBJSTORE_REPO')\nfrom objstore.redun import x\n"),
        ("refs.local", "import os\nfrom .base import MISSING\nfrom refs.errors import RefsError\n"),
        ("objstore.fs", "import os\npath = os.path.join('a', 'b')\n"),  # os itself is fine in I/O layers
    ],
)
def test_the_checker_allows_what_the_layers_allow(module, text):
    assert _check(module, text, is_package=module in ("objstore", "objstore.cli")) == []


def test_a_violation_planted_in_a_real_module_is_found():
    # Take the real codec source, add one forbidden import, and the tree check must object.
    codec = next(s for s in tree_sources() if s.module == "objstore.codec")
    assert check_source(codec) == []
    planted = Source(codec.module, False, codec.text + "\nfrom objstore.repo import Repository\n")
    assert any("layer repo" in p for p in check_source(planted))
