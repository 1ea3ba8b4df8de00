#!/usr/bin/env bash
# `make run` smoke test: tools/run-stack.sh starts redis, devbroker, router,
# three shards, the publisher and the demo client; the demo client must
# receive live events through the shared (SO_REUSEPORT) port, and everything
# must stop cleanly.  Each process gets only its own settings: with a shard
# setting and a router setting in the caller's environment (as `WS_MAX_CONNECTIONS=...
# make run` would give), no process logs an unknown setting (odin binaries
# stop on one) and each setting reaches its own binary.
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"
run_stack_env run-stack
rc=0
env "${RUN_STACK_ENV[@]}" WS_MAX_CONNECTIONS=1000 ROUTE_CACHE_SIZE=5000 LOG_LEVEL=info \
    WATCH_SECONDS=12 PUBLISH_RATE=200 timeout 120 "$top/tools/run-stack.sh" >"$out" 2>&1 || rc=$?
cat "$out" | grep -v '^{"seq"' | tail -20
[ $rc -eq 0 ] || { echo "run-stack exited $rc"; exit 1; }
n=$(sed -n 's/^received \([0-9]*\)$/\1/p' "$out")
live=$(grep -c '^{"seq":' "$out" || true)
echo "demo client received $n live messages ($live printed)"
[ "${n:-0}" -gt 0 ] || { echo "no live message reached the demo client"; exit 1; }
[ "$n" -eq "$live" ] || { echo "count line disagrees with printed messages"; exit 1; }
grep -q '"channel":"BTC.trade"' "$out" || { echo "no BTC.trade message"; exit 1; }
grep -q '^stopped;' "$out" || { echo "stack did not stop cleanly"; exit 1; }
# the docs' recipes use redis-cli -u "$REDIS_URL": the stack says which
grep -q '^  export REDIS_URL=redis://127.0.0.1:[0-9]*$' "$out" || { echo "no export REDIS_URL line"; exit 1; }
# every shard deregistered and the router exited 0 (no "Killed" from cleanup)
! grep -q 'Killed' "$out" || { echo "a process had to be killed"; exit 1; }
for i in 1 2 3; do
    grep -q '"msg":"shard stopped"' "$run_dir/logs/shard-$i.log" || { echo "shard-$i did not stop cleanly"; exit 1; }
done
# the live page (docs/clients.md) was served on a loopback port and its URL printed
grep -q '^  live page (browser):    http://127.0.0.1:[0-9]*/web/?ws=ws://127.0.0.1:[0-9]*/ws,' "$out" || { echo "no live page URL"; exit 1; }
grep -q '^Serving HTTP on 127.0.0.1 port [0-9]' "$run_dir/logs/page.log" || { echo "page server did not start"; exit 1; }
# environment hygiene: no process saw a setting that is not its own (the
# old script exported router settings to every shard: "KAFKA_EVICT_PREVIOUS
# is not a setting of odin-shard")
if grep -l -e '"msg":"unknown setting"' -e 'is not a setting' "$run_dir"/logs/*; then
    echo "a process was given a setting that is not its own"; exit 1
fi
# ... while its own settings from the caller's environment still reach it
grep -q '"max_connections":1000,' "$run_dir/logs/shard-1.log" || { echo "WS_MAX_CONNECTIONS did not reach the shard"; exit 1; }
echo "run-stack smoke: ok"
