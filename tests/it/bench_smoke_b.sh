#!/usr/bin/env bash
# The benchmark scripts at smoke size, second half (see bench_smoke.sh):
# every one bench_smoke.sh does not run (shards, latency, hostile, resume).
set -euo pipefail
SMOKE_EXCEPT="capacity dispatch router fanout" BUILD=${ODIN_BUILD:?} \
    BENCH_OUT="${ODIN_TMP:?}/bench-smoke-b.$$" exec bash "${ODIN_TOP:?}/bench/smoke.sh"
