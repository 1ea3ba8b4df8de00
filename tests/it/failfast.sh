#!/usr/bin/env bash
# Configuration mistakes fail fast, with a reason (issue 14):
#  - a misspelt setting in the environment stops the process (exit 2) with
#    the closest name, as a JSON line (tests/it/strict_config.sh has more);
#  - a KAFKA_BROKERS that is not a host:port list exits 2 (router, shard);
#  - --help ranges are integers one can type back (no 1.09951e+12);
#  - a bad REDIS_URL says why; a busy HTTP_ADDR / WS_ADDR names the errno;
#  - WS_MAX_PENDING that leaves almost no connections is warned;
#  - odin-loadgen exits non-zero when not one connection succeeded.
set -euo pipefail
B=${ODIN_BUILD:?}
# shellcheck source=../support/stack.sh
. "${ODIN_TOP:?}/tests/support/stack.sh"
stack_init failfast
STACK_LOGS=""
expect_rc() { # want cmd...
    local want=$1; shift; local rc=0
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq "$want" ] || { cat "$T/err" >&2; fail "$* exited $rc, want $want"; }
}

# misspelt setting: refused with the closest known name
WS_MAX_CONECTIONS=5 expect_rc 2 "$B/odin-shard"
grep -q '"msg":"unknown setting","setting":"WS_MAX_CONECTIONS","did_you_mean":"WS_MAX_CONNECTIONS"' "$T/err" \
    || fail "no error for WS_MAX_CONECTIONS: $(cat "$T/err")"
ROUTER_BATCH_SIZ=5 expect_rc 2 "$B/odin-router" --kafka-brokers=x:1
grep -q '"setting":"ROUTER_BATCH_SIZ","did_you_mean":"' "$T/err" \
    || fail "no error in the router: $(cat "$T/err")"

# KAFKA_BROKERS syntax
KAFKA_BROKERS='not a broker' expect_rc 2 "$B/odin-router"
grep -q "KAFKA_BROKERS.*host:port" "$T/err" || fail "router: $(cat "$T/err")"
KAFKA_BROKERS='kafka:9092,oops' expect_rc 2 "$B/odin-shard"
grep -q "KAFKA_BROKERS must be a host:port list ('oops'" "$T/err" || fail "shard: $(cat "$T/err")"

# ranges as integers
for bin in odin-shard odin-router odin-loadgen odin-publish; do
    "$B/$bin" --help >"$T/help"
    if grep -n "range:.*e+" "$T/help"; then fail "$bin --help prints a range in e-notation"; fi
done
"$B/odin-shard" --help >"$T/help"   # (not piped into grep -q: SIGPIPE + pipefail)
grep -q "range: 0 .. 1099511627776" "$T/help" || fail "WS_PARTIAL_BUDGET range"

# bad REDIS_URL: the reason, password redacted
expect_rc 2 "$B/odin-shard" --redis-url='http://u:secret@redis:6379'
grep -q "REDIS_URL 'http://u:\*\*\*@redis:6379' is not redis://.*: scheme 'http' is not redis:// or unix:" "$T/err" || fail "$(cat "$T/err")"
expect_rc 2 "$B/odin-router" --kafka-brokers=a:1 --redis-url='redis://redis:99999'
grep -q "REDIS_URL.*: 'redis:99999' is not host:port with a port 0-65535" "$T/err" || fail "$(cat "$T/err")"
grep -q secret "$T/err" && fail "password in the error"

# busy ports: errno text in the error
spawn_out holder python3 -c 'import socket,time,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1",0)); s.listen(1)
print(s.getsockname()[1], flush=True); time.sleep(60)'
holder=$SPAWNED
wait_until 10 test -s "$T/holder.out" || fail "the port holder did not start"
busy=$(cat "$T/holder.out")
expect_rc 1 "$B/odin-router" --kafka-brokers="$ODIN_KAFKA_BROKERS" --redis-url="$ODIN_REDIS_URL" \
    --http-addr="127.0.0.1:$busy"
grep -q '"cannot listen for HTTP".*Address already in use' "$T/err" || fail "router: $(cat "$T/err")"
expect_rc 1 "$B/odin-shard" --ws-addr="127.0.0.1:$busy" --shard-socket="$T/s1.sock" \
    --redis-url="$ODIN_REDIS_URL"
grep -q '"cannot listen".*Address already in use' "$T/err" || fail "shard: $(cat "$T/err")"

# WS_MAX_PENDING that leaves almost nothing: warned (the shard still starts;
# stopped once the warning is there)
spawn_out tiny bash -c 'ulimit -n 400; exec "$@"' _ "$B/odin-shard" --ws-addr=127.0.0.1:0 \
    --ws-max-pending=300 --shard-socket="$T/s2.sock" --redis-url="$ODIN_REDIS_URL"
wait_while_alive 10 "$SPAWNED" grep -q '"max connections is tiny' "$T/tiny.log" ||
    fail "no tiny-capacity warning: $(cat "$T/tiny.log")"
grep -q '"max_connections":36' "$T/tiny.log" || fail "$(grep tiny "$T/tiny.log")"
stack_stop "$SPAWNED"

# odin-loadgen: nothing connected -> non-zero
stack_stop "$holder"
rc=0
LG_TARGETS="127.0.0.1:$busy" LG_CONNECTIONS=5 LG_PROCESSES=1 LG_DURATION_S=0 LOG_LEVEL=error \
    "$B/odin-loadgen" >"$T/lg.json" 2>"$T/lg.log" || rc=$?
[ "$rc" -eq 4 ] || fail "loadgen with no connection exited $rc, want 4: $(tail -3 "$T/lg.log")"
echo "failfast: ok"
