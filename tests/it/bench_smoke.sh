#!/usr/bin/env bash
# The benchmark scripts (bench/*.sh) at smoke size, against $ODIN_BUILD.
# Each starts its own redis-server, odin-devbroker, shards and router on free
# ports; bench/smoke.sh checks every table and result file.
set -euo pipefail
BUILD=${ODIN_BUILD:?} BENCH_OUT="${ODIN_TMP:?}/bench-smoke.$$" exec bash "${ODIN_TOP:?}/bench/smoke.sh"
