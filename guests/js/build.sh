#!/usr/bin/env bash
# Build the JavaScript example content module (guests/js/shengxiao) into a
# WebAssembly component:
#
#     target/guests/js/shengxiao_js.wasm
#
# Usage: guests/js/build.sh            (from any directory)
#
# Needs node (>= 18) and npm. The first run installs the exact packages of
# guests/js/package-lock.json (componentize-js 0.23.0) into target/js-node with
# `npm ci`, keeping the downloaded tarballs in target/npm-cache; later runs, and
# runs with a deleted target/js-node but the same target/npm-cache, work offline.
#
# Environment (all optional):
#   WIT_DIR    the WIT package to build against (default: wit/v1.0.0)
#   APP        the JavaScript source (default: guests/js/shengxiao/app.js)
#   OUT        the output file (default: target/guests/js/shengxiao_js.wasm)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
NODE_DIR="$ROOT/target/js-node"
NPM_CACHE="$ROOT/target/npm-cache"
WIT_DIR="${WIT_DIR:-$ROOT/wit/v1.0.0}"
APP="${APP:-$HERE/shengxiao/app.js}"
OUT="${OUT:-$ROOT/target/guests/js/shengxiao_js.wasm}"

say() { echo "build.sh: $*" >&2; }

for tool in node npm; do
    if ! command -v "$tool" >/dev/null; then
        say "'$tool' not found; install Node.js 18 or newer with npm (Debian: apt-get install nodejs npm)"
        exit 1
    fi
done

# 1. componentize-js and its dependencies, exactly as locked. `npm ci` runs only
#    when target/js-node does not hold this lock file's install yet. It first
#    tries the tarballs kept in target/npm-cache alone (--offline), and reaches
#    the registry only when they are not all there.
mkdir -p "$NODE_DIR"
if ! cmp -s "$HERE/package-lock.json" "$NODE_DIR/node_modules/.tongdao-lock.json"; then
    say "installing guests/js/package-lock.json into $NODE_DIR"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$NODE_DIR/"
    npm_ci() {
        npm ci --prefix "$NODE_DIR" --cache "$NPM_CACHE" --no-audit --no-fund \
            --loglevel=error "$@"
    }
    if ! npm_ci --offline 2>/dev/null; then
        say "downloading the packages npm lacks from the npm registry into $NPM_CACHE"
        npm_ci --prefer-offline
    fi
    cp "$HERE/package-lock.json" "$NODE_DIR/node_modules/.tongdao-lock.json"
fi
CJS="$NODE_DIR/node_modules/.bin/componentize-js"

# 2. The component. Disabling every WASI feature of the engine (stdio, random,
#    clocks, and the default wasi:http `fetch` and `fetch-event` handler) makes a
#    component that imports only the tongdao:partner interfaces; the host refuses
#    wasi:http.
mkdir -p "$(dirname "$OUT")"
say "componentize-js $("$CJS" --version): $APP against $WIT_DIR"
start=$(date +%s.%N)
"$CJS" "$APP" --wit "$WIT_DIR" --world-name content-module \
    --disable stdio random clocks http fetch-event --out "$OUT"
end=$(date +%s.%N)

# 3. Check the output (component header, only tongdao:partner imports, the
#    module export, initial linear memory) with the checker the Python example
#    uses; `tongdao module check` does the platform's full check.
if command -v python3 >/dev/null; then
    python3 "$ROOT/guests/python/check_component.py" "$OUT"
else
    say "python3 not found: skipping check_component.py (run 'tongdao module check $OUT')"
fi

size=$(stat -c %s "$OUT")
printf '%s\n' "$OUT"
awk -v s="$size" -v a="$start" -v b="$end" \
    'BEGIN { printf "size: %d bytes (%.1f MiB), componentize: %.1f s\n", s, s / 1048576, b - a }'
