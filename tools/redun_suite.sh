#!/usr/bin/env bash
# Run redun's own shipped test suite (site-packages/redun/tests) against objstore's redun backend.
#   bash tools/redun_suite.sh                      # objstore (the default)
#   bash tools/redun_suite.sh --backend sqlite     # redun unchanged: the baseline
#   bash tools/redun_suite.sh --backend sqlite-wrapped   # harness self-check of the sql deselects
#   bash tools/redun_suite.sh -- -k handle         # anything after -- goes to pytest
# What is not run, and why: tests/redun_deselect.txt. Mechanism: tests/redun_plugin.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
BACKEND=objstore
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) BACKEND="$2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
# redun's tests need these beyond objstore's [test] extra (freezegun: test_cli/test_file,
# vcrpy: test_file, tqdm: test_file_fork); installed once, then skipped.
if ! "$PY" -c "import freezegun, vcr, tqdm" >/dev/null 2>&1; then
    "$PY" -m pip install -q --disable-pip-version-check freezegun vcrpy tqdm
fi
SITE="$("$PY" -c 'import redun, os; print(os.path.dirname(os.path.dirname(redun.__file__)))')"
# redun's tests use paths relative to site-packages (e.g. redun/tests/test_data/...), so run there;
# -c /dev/null keeps this repository's pytest settings (testpaths) out of it; rootdir for ids.
# `redun launch` tests start the redun CLI by name.
export PATH="$(dirname "$PY"):$PATH"
cd "$SITE"
export PYTHONPATH="$ROOT/tests:$ROOT/tests/redun_suite_site${PYTHONPATH:+:$PYTHONPATH}"
# Test paths given after -- (redun/tests/test_x.py...) replace the default of the whole suite.
TARGETS=(redun/tests)
for a in "$@"; do case "$a" in redun/tests*) TARGETS=() ;; esac; done
exec "$PY" -m pytest -c /dev/null --rootdir "$SITE" -p redun_plugin -p no:cacheprovider \
    -o timeout=180 -q -rfE --redun-backend "$BACKEND" "${TARGETS[@]}" "$@"
