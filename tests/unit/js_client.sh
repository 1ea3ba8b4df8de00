#!/usr/bin/env bash
# clients/js: the committed dist/ is what the TypeScript sources compile to
# (rebuilt here into a scratch directory and compared), then the library's
# unit tests (node --test, fake WebSocket and clock: back-off, dedup, resume
# message, refetch per code, heartbeats, state order).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
js="$top/clients/js"
command -v node >/dev/null || { echo "node is not installed (tools/deps.sh)" >&2; exit 1; }
[ -x "$js/node_modules/.bin/tsc" ] || { echo "clients/js/node_modules missing: run tools/deps.sh (npm ci)" >&2; exit 1; }
out=$(mktemp -d "${ODIN_TMP:-/tmp}/jsdist.XXXXXX")
trap 'rm -rf "$out"' EXIT
(cd "$js" && node_modules/.bin/tsc -p tsconfig.json --outDir "$out")
if ! diff -r "$out" "$js/dist"; then
    echo "FAIL: clients/js/dist differs from a fresh build: run 'npm run build' in clients/js and commit dist/" >&2
    exit 1
fi
echo "dist/ matches a fresh build"
cd "$js" && node --test test/client.test.js
