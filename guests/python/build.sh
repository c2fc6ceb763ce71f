#!/usr/bin/env bash
# Build the Python example content module (guests/python/fortune) into a
# WebAssembly component:
#
#     target/guests/python/fortune_py.wasm
#
# Usage: guests/python/build.sh            (from any directory)
#
# Needs python3 (>= 3.9, with the venv module). The first run installs
# componentize-py 0.25.1 from PyPI into target/python-venv and keeps its wheel in
# target/python-wheels; later runs, and runs with a fresh venv but the same
# target/, work offline.
#
# Environment (all optional):
#   PYTHON     the python used to create the venv (default: python3)
#   WIT_DIR    the WIT package to build against (default: wit/v1.0.0)
#   APP_DIR    the folder holding app.py (default: guests/python/fortune)
#   OUT        the output file (default: target/guests/python/fortune_py.wasm)
set -euo pipefail

CPY_VERSION=0.25.1

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$ROOT/target/python-venv"
WHEELS="$ROOT/target/python-wheels"
WIT_DIR="${WIT_DIR:-$ROOT/wit/v1.0.0}"
APP_DIR="${APP_DIR:-$HERE/fortune}"
OUT="${OUT:-$ROOT/target/guests/python/fortune_py.wasm}"
PYTHON="${PYTHON:-python3}"

say() { echo "build.sh: $*" >&2; }

# 1. The venv.
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating venv $VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! "$PYTHON" -m venv "$VENV"; then
        rm -rf "$VENV"
        say "'$PYTHON -m venv' failed; install the venv module (Debian: apt-get install python3-venv) or set PYTHON"
        exit 1
    fi
fi
CPY="$VENV/bin/componentize-py"

# 2. componentize-py, pinned. Install from the local wheel directory when it has
#    the wheel (offline), else download it from PyPI into that directory first.
installed="$("$VENV/bin/python" -m pip show componentize-py 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [[ "$installed" != "$CPY_VERSION" ]]; then
    mkdir -p "$WHEELS"
    if ! "$VENV/bin/python" -m pip install -q --no-index --find-links "$WHEELS" \
            "componentize-py==$CPY_VERSION" 2>/dev/null; then
        say "downloading componentize-py $CPY_VERSION from PyPI into $WHEELS"
        "$VENV/bin/python" -m pip download -q --only-binary=:all: --no-deps -d "$WHEELS" \
            "componentize-py==$CPY_VERSION"
        "$VENV/bin/python" -m pip install -q --no-index --find-links "$WHEELS" \
            "componentize-py==$CPY_VERSION"
    fi
fi

# 3. The component. --stub-wasi replaces every WASI import with a trapping stub,
#    so the component imports only the tongdao:partner interfaces. VIRTUAL_ENV is
#    unset so that no other activated venv's site-packages is bundled.
#    (componentize-py writes fortune/__pycache__; guests/python/.gitignore covers it.)
mkdir -p "$(dirname "$OUT")"
say "componentize-py $CPY_VERSION: $APP_DIR against $WIT_DIR"
start=$(date +%s.%N)
(
    cd "$ROOT"
    env -u VIRTUAL_ENV "$CPY" -q -d "$WIT_DIR" -w content-module \
        componentize app --stub-wasi -p "$APP_DIR" -o "$OUT"
)
end=$(date +%s.%N)

# 4. Check the output: a component (header 00 61 73 6d 0d 00 01 00), importing only
#    tongdao:partner interfaces and exporting tongdao:partner/module@1.0.0. Also
#    prints its imports, exports and initial linear memory.
"$VENV/bin/python" "$HERE/check_component.py" "$OUT"

size=$(stat -c %s "$OUT")
printf '%s\n' "$OUT"
awk -v s="$size" -v a="$start" -v b="$end" \
    'BEGIN { printf "size: %d bytes (%.1f MiB), componentize: %.1f s\n", s, s / 1048576, b - a }'
