#!/usr/bin/env bash
# Docs match the code: every setting each binary's --help lists, and every
# metric a live shard and router export, is documented in docs/.
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
B=$ODIN_BUILD
fail=0
for bin in odin-shard odin-router; do
    for env in $("$B/$bin" --help | sed -n 's/^  --[a-z0-9-]*, \([A-Z0-9_]*\) (.*/\1/p'); do
        grep -q "\`$env\`" "$top/docs/operations.md" || { echo "docs/operations.md lacks $bin setting $env"; fail=1; }
    done
done
for bin in odin-devbroker odin-publish odin-loadgen odin-watch odin-ctl odin-resumestorm; do
    for env in $("$B/$bin" --help | sed -n 's/^  --[a-z0-9-]*, \([A-Z0-9_]*\) (.*/\1/p'); do
        grep -rq "$env" "$top/docs/" || { echo "docs/ lacks $bin setting $env"; fail=1; }
    done
done

. "${ODIN_TOP:?}/tests/support/ports.sh"
sp=$(free_port); rp=$(free_port)
sock="$ODIN_TMP/docs-match.sock"
"$B/odin-shard" --shard-id "docs-$$" --ws-addr "127.0.0.1:$sp" --shard-socket "$sock" \
    --redis-url "$ODIN_REDIS_URL" 2>"$ODIN_TMP/docs-shard.log" &
spid=$!
"$B/odin-router" --kafka-brokers "$ODIN_KAFKA_BROKERS" --redis-url "$ODIN_REDIS_URL" \
    --kafka-group "docs-$$" --http-addr "127.0.0.1:$rp" 2>"$ODIN_TMP/docs-router.log" &
rpid=$!
trap 'kill $spid $rpid 2>/dev/null; wait 2>/dev/null' EXIT
get() { # port path -> body, retrying until the server answers (bounded)
    for _ in $(seq 100); do
        if exec 3<>"/dev/tcp/127.0.0.1/$1" 2>/dev/null; then
            printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&3; cat <&3; exec 3<&-; return 0
        fi
        sleep 0.05   # the process is starting; no event to wait on from bash
    done
    return 1
}
for p in "$sp" "$rp"; do
    names=$(get "$p" /metrics | sed -n 's/^# HELP \([a-z_]*\) .*/\1/p')
    [ -n "$names" ] || { echo "no metrics from port $p"; fail=1; }
    for m in $names; do
        grep -q "\`$m\`" "$top/docs/operations.md" || { echo "docs/operations.md lacks metric $m"; fail=1; }
    done
done
[ $fail = 0 ] && echo "docs match: every setting and metric is documented"
exit $fail
