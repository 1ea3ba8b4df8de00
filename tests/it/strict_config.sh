#!/usr/bin/env bash
# Strict configuration and --version, on every binary:
#  - a misspelt setting in the environment (WS_MAX_CONECTIONS, ROUTE_CACHE_SIZ,
#    HTTP_ADR) stops the process with exit 2 and one JSON log line naming
#    the closest setting; CONFIG_STRICT=false turns it into a warning and the
#    process starts with the default;
#  - a misspelt flag stops every binary with exit 2 (and a suggestion);
#  - --version prints "<binary> <git describe of the build>" and exits 0;
#  - everything on stderr at start-up is JSON (jq-able), no plain text.
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
B=$ODIN_BUILD
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"
stack_init strict_config
fail=0
bad() { echo "FAIL: $*"; fail=1; }
all_json() {   # file: every line is a JSON object
    python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    assert isinstance(o, dict) and "msg" in o and "level" in o, line
PY
}
expect_exit2() {   # name want-in-stderr cmd...
    local name=$1 want=$2; shift 2
    local err="$ODIN_TMP/strict-$name.err" rc=0
    timeout 20 "$@" >/dev/null 2>"$err" </dev/null || rc=$?
    [ "$rc" -eq 2 ] || { bad "$name: exit $rc, not 2"; cat "$err"; return; }
    grep -qF -- "$want" "$err" || { bad "$name: stderr lacks $want"; cat "$err"; return; }
    all_json "$err" || { bad "$name: stderr is not JSON lines"; cat "$err"; }
}

version=$(cat "$B/version.stamp")
for bin in odin-router odin-shard odin-devbroker odin-publish odin-loadgen odin-watch odin-ctl; do
    out=$("$B/$bin" --version 2>&1) && rc=0 || rc=$?
    [ "$rc" -eq 0 ] || bad "$bin --version exited $rc: $out"
    [ "$out" = "$bin $version" ] || bad "$bin --version printed '$out', not '$bin $version'"
    # a misspelt flag is fatal everywhere, with the closest flag: the
    # binary's first flag, its last letter dropped
    flag=$("$B/$bin" --help | sed -n 's/^  \(--[a-z0-9-]*\), .*/\1/p' | head -1)
    expect_exit2 "$bin-flag" "\"msg\":\"unknown option\",\"option\":\"${flag%?}\",\"did_you_mean\":\"$flag\"" \
        "$B/$bin" "${flag%?}=1"
done
ls "$B"/odin-* | while read -r b; do   # no binary without --version
    "$b" --version >/dev/null 2>&1 || echo "FAIL: $b --version"
done | grep FAIL && fail=1

# the issue's examples
expect_exit2 shard-env '"setting":"WS_MAX_CONECTIONS","did_you_mean":"WS_MAX_CONNECTIONS"' \
    env WS_MAX_CONECTIONS=5 "$B/odin-shard"
expect_exit2 shard-flag '"did_you_mean":"--ws-max-connections"' \
    "$B/odin-shard" --ws-max-conections=5
expect_exit2 router-cache '"setting":"ROUTE_CACHE_SIZ","did_you_mean":"ROUTE_CACHE_SIZE"' \
    env ROUTE_CACHE_SIZ=5 "$B/odin-router" --kafka-brokers 127.0.0.1:1
expect_exit2 router-http '"setting":"HTTP_ADR","did_you_mean":"HTTP_ADDR"' \
    env HTTP_ADR=127.0.0.1:1 "$B/odin-router" --kafka-brokers 127.0.0.1:1
# a router setting given to a shard: not its own, so refused too
expect_exit2 shard-router-setting '"setting":"KAFKA_EVICT_PREVIOUS"' \
    env KAFKA_EVICT_PREVIOUS=true "$B/odin-shard"
expect_exit2 publish-env '"did_you_mean":"PUBLISH_RATE"' env PUBLISH_RAT=5 "$B/odin-publish"
expect_exit2 strict-typo '"did_you_mean":"CONFIG_STRICT"' env CONFIG_STRCT=false "$B/odin-watch"
# a bad value is a JSON line too
expect_exit2 shard-value '"msg":"invalid setting","setting":"WS_MAX_CONNECTIONS"' \
    env WS_MAX_CONNECTIONS=lots "$B/odin-shard"

# relaxed: CONFIG_STRICT=false warns and starts with the default
sp=$(port)
log="$T/relaxed.log"   # stderr (stdout: relaxed.out)
spawn_out relaxed env CONFIG_STRICT=false WS_MAX_CONECTIONS=5 "$B/odin-shard" --shard-id "strict-$$" \
    --ws-addr "127.0.0.1:$sp" --shard-socket "$T/strict.sock" --redis-url "$ODIN_REDIS_URL"
spid=$SPAWNED
# the shard is starting (or ends): its log line is the event
wait_while_alive 10 "$spid" grep -q '"msg":"listening"' "$log" || true
grep -q '"msg":"listening"' "$log" || bad "relaxed shard did not start"
grep -q '"level":"warn","component":"shard","msg":"unknown setting","setting":"WS_MAX_CONECTIONS","did_you_mean":"WS_MAX_CONNECTIONS"' "$log" ||
    bad "relaxed shard did not warn"
grep -q '"msg":"capacity".*"derived":true' "$log" || bad "relaxed shard did not keep the default WS_MAX_CONNECTIONS"
stack_stop "$spid"
all_json "$log" || bad "relaxed shard's log is not JSON lines"

[ $fail = 0 ] && echo "strict config: misspelt settings and flags exit 2 with a suggestion; --version everywhere"
exit $fail
