#!/usr/bin/env bash
# The frame-decoder fuzzer builds and runs clean for a few seconds (the full
# run is `make fuzz`, FUZZ_SECONDS=60 by default).
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
make --no-print-directory -C "$top/tests/fuzz" run FUZZ_SECONDS="${FUZZ_SMOKE_SECONDS:-10}" 2>&1 | tail -n 6
