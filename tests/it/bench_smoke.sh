#!/usr/bin/env bash
# The benchmark scripts (bench/*.sh) at smoke size, against $ODIN_BUILD:
# capacity, dispatch, router and fanout here, the others in bench_smoke_b.sh
# (so that tools/run-tests.sh runs the two halves side by side).
# Each starts its own redis-server, odin-devbroker, shards and router on free
# ports; bench/smoke.sh checks every table and result file.
set -euo pipefail
SMOKE_ONLY="capacity dispatch router fanout" BUILD=${ODIN_BUILD:?} \
    BENCH_OUT="${ODIN_TMP:?}/bench-smoke.$$" exec bash "${ODIN_TOP:?}/bench/smoke.sh"
