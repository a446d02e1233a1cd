#!/usr/bin/env bash
# The README's first command: objstore as redun's backend, end to end, on a fresh machine.
#   bash tools/demo.sh
# Creates (or reuses) .venv, installs objstore with redun, copies examples/compile into demo/
# (gitignored; recreated every time; $DEMO_DIR elsewhere), creates its repository with
# `objstore init --redun` (redun never creates one silently), builds two C programs with `redun run`,
# edits the shared lib.c, builds again (only what depends on lib.c runs), runs both programs
# and shows the provenance objstore recorded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
command -v gcc >/dev/null 2>&1 || { echo "demo.sh: the example compiles C: install gcc" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import objstore.redun, redun" >/dev/null 2>&1; then
    say "pip install -e '.[redun]'"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[redun]'
fi
export PATH="$ROOT/.venv/bin:$PATH"

DEMO_DIR="${DEMO_DIR:-$ROOT/demo}"
rm -rf "$DEMO_DIR"
cp -r examples/compile "$DEMO_DIR"
cd "$DEMO_DIR"

say "objstore init --redun (the repository redun records into: ./.objstore; redun.ini points redun's CLI at it too)"
objstore init --redun

say "first build: redun run workflow.py make"
redun run workflow.py make

say "edit lib.c (a new message), build again: compile(prog.c)/compile(prog2.c) are cached"
sed -i.bak 's/Hello, World!/Hello, objstore!/' lib.c && rm -f lib.c.bak
redun run workflow.py make

say "run the programs"
./prog
./prog2

say "objstore log (provenance recorded in ./.objstore)"
objstore log
