#!/usr/bin/env bash
# Every libFuzzer target (frame decoder, WebSocket input, HTTP upgrade, PROXY v2,
# client messages) builds, replays its regression inputs and runs clean for
# a few seconds each (the full run is `make fuzz`, FUZZ_SECONDS=60 each).
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
out=$(make --no-print-directory -C "$top/tests/fuzz" run FUZZ_SECONDS="${FUZZ_SMOKE_SECONDS:-4}" 2>&1) || {
    echo "$out" | tail -n 40; exit 1; }
echo "$out" | grep -E '^== |Done'
# all five ran
[ "$(echo "$out" | grep -c '^Done')" -eq 5 ] || { echo "not every fuzzer ran"; exit 1; }
