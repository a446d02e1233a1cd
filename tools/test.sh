#!/usr/bin/env bash
# The one command that sets up and runs the whole test suite on a fresh machine
# (Debian, python3.11, node 20, npm; as root it apt-get installs postgresql, chromium and
# graphviz). Idempotent: every step is skipped when its result is already present, so a
# second run goes straight to pytest.
#   bash tools/test.sh                 # whole suite
#   bash tools/test.sh -k refs -x      # extra arguments go to pytest
#   bash tools/test.sh tests/test_infra.py   # just one file
#   PYTEST_WORKERS=0 bash tools/test.sh      # in one process (no pytest-xdist workers)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# System servers and tools from Debian: PostgreSQL (initdb/pg_ctl for the postgres_server
# fixture), headless Chromium (tests/browser.py) and Graphviz (dot). One apt-get update and
# one install, only when a binary is missing; with all present this costs a few stat calls.
apt_missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_missing+=(postgresql)
[ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v dot >/dev/null 2>&1 || apt_missing+=(graphviz)
if [ ${#apt_missing[@]} -gt 0 ]; then
    apt_sudo=()
    if [ "$(id -u)" -ne 0 ] && sudo -n true 2>/dev/null; then
        apt_sudo=(sudo -n)
    fi
    if ! command -v apt-get >/dev/null 2>&1 || { [ "$(id -u)" -ne 0 ] && [ ${#apt_sudo[@]} -eq 0 ]; }; then
        echo "tools/test.sh: WARNING: ${apt_missing[*]} missing and not installable from here" \
             "(this needs Debian's apt-get, as root or with passwordless sudo)." \
             "Install them yourself; until then the tests that use them fail, naming what is missing." >&2
    else
        echo "tools/test.sh: apt-get install ${apt_missing[*]}" >&2
        "${apt_sudo[@]}" apt-get update -q
        "${apt_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
    fi
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
    echo "tools/test.sh: creating .venv" >&2
    "$PYTHON" -m venv .venv
fi

# Re-install only when pyproject.toml changed since the last successful install:
# pip's own "already satisfied" pass costs several seconds on every run.
STAMP=.venv/.objstore-test-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ tools/test-constraints.txt -nt "$STAMP" ] \
        || ! .venv/bin/python -c "
import importlib.util as u, sys
need = ['objstore', 'refs', 'pytest', 'xdist', 'hypothesis', 'moto', 'gcp_storage_emulator', 's3fs', 'gcsfs', 'adlfs', 'redun',
        'psycopg', 'playwright', 'ruff', 'mypy']
sys.exit(any(u.find_spec(m) is None for m in need))" >/dev/null 2>&1; then
    echo "tools/test.sh: pip install -e '.[test]'" >&2
    # The constraints file is what makes this resolve at all (see its header).
    .venv/bin/python -m pip install -q --disable-pip-version-check -c tools/test-constraints.txt -e '.[test]'
    touch "$STAMP"
fi

if [ ! -x tools/node/node_modules/.bin/azurite-blob ]; then
    echo "tools/test.sh: npm install azurite@3.35.0 into tools/node" >&2
    # 3.36+ declare engines.node >= 21; 3.35.0 is the newest that installs cleanly on node 20.
    mkdir -p tools/node
    npm install --prefix tools/node --no-audit --no-fund azurite@3.35.0
fi

# The fixtures find the servers without this, but a PATH that names them helps
# anyone debugging by hand from inside a test.
export PATH="$ROOT/.venv/bin:$ROOT/tools/node/node_modules/.bin:$PATH"

# The code is checked before it is tested: lint (ruff) and types (mypy), as configured in
# pyproject.toml. Either failing fails the command.
echo "tools/test.sh: ruff check objstore refs" >&2
.venv/bin/ruff check objstore refs
echo "tools/test.sh: mypy (objstore, refs)" >&2
.venv/bin/mypy

# Two pytest-xdist workers: much of the suite's time is spent waiting on subprocesses (the
# CLIs, `redun run`) and loopback servers, so one process leaves a core of the 2-core CI
# machine idle. Each worker starts its own session servers on free ports and has its own
# tmp_path tree. loadscope hands out whole modules, so a module-scoped fixture is built
# once, not once per worker; in collection order (no reorder), which puts the minutes-long
# tests first (tests/conftest.py) so none is left running alone at the end.
# PYTEST_WORKERS=0 runs everything in this one process.
# No path here: pytest falls back to testpaths (tests/) only when the arguments name none,
# so `bash tools/test.sh tests/test_infra.py` runs that file and not the whole suite too.
WORKERS="${PYTEST_WORKERS:-2}"
if [ "$WORKERS" = 0 ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q -n "$WORKERS" --dist loadscope --no-loadscope-reorder "$@"
