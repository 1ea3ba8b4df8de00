#!/usr/bin/env bash
# A real browser against a real stack: headless Chromium (Debian's
# `chromium`, driven through the DevTools protocol over
# --remote-debugging-pipe by tests/browser/browser_test.mjs; no npm
# package, no browser download) opens the live page (clients/web) served by
# python3 -m http.server, with BROWSER_CONNS connections (each an OdinClient
# starting on a different shard) subscribed to BROWSER_TOKENS tokens.
# odin-router + 3 odin-shards with KAFKA_BROKERS; once every connection is
# live, odin-publish produces at a steady rate; once the page has
# BROWSER_KILL_AFTER records, the shard serving connection 0 is SIGKILLed;
# once the page has resumed and received more, the publisher is stopped and
# what Kafka holds for the tokens is read back with kcat.  Each connection's
# stream, per token, must be exactly that list of (partition, offset), and
# the page's own counters must say 0 gaps, 0 duplicates, >= 1 resume, no
# refetch, every connection live.  The answer of the shards to Chromium's
# permessage-deflate offer (Sec-WebSocket-Extensions in the handshake
# response, as DevTools reports it) must be absent or a valid RFC 7692
# answer to that offer, and no WebSocket frame error may occur except the
# reset of the killed shard's connection; which case happened is printed
# (when accepted, the surviving shards' ws_deflate_messages_sent_total, if
# they export it, must show compressed messages).
# A screenshot of the page is saved under $ODIN_TMP (path printed); with
# BROWSER_SCREENSHOT_OUT=path it is copied there too (e.g.
# docs/img/live-page.png).  BROWSER_CLIENTS_DIR serves another copy of
# clients/ (to check the test fails on a broken library or page).
set -euo pipefail
B=${ODIN_BUILD:?}
top=${ODIN_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
clients=${BROWSER_CLIENTS_DIR:-$top/clients}
T="$ODIN_TMP/browser.$$"
mkdir -p "$T"
NCONN=${BROWSER_CONNS:-3}
NTOK=${BROWSER_TOKENS:-3}
RATE=${BROWSER_RATE:-120}
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$T"/*.log; do echo "== $f"; tail -5 "$f"; done >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_until() { # timeout_s cmd...
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.05; done
}
browser=${BROWSER:-$(command -v chromium || true)}
[ -n "$browser" ] || skip "no chromium (tools/deps.sh installs Debian's chromium)"
command -v node >/dev/null || skip "no node (tools/deps.sh installs nodejs)"
command -v kcat >/dev/null || fail "kcat is not installed (tools/deps.sh)"
# a browser that cannot start here (no display libraries, a broken package)
"$browser" --headless=new --no-sandbox --user-data-dir="$T/probe-profile" --dump-dom about:blank \
    >"$T/probe.out" 2>"$T/probe.log" </dev/null || skip "chromium does not start: $(tail -2 "$T/probe.log")"

export REDIS_URL="$ODIN_REDIS_URL" REDIS_PREFIX="brw$$:" KAFKA_BROKERS="$ODIN_KAFKA_BROKERS"
toks=(); for i in $(seq 0 $((NTOK - 1))); do toks+=("BRW$$_$i"); done
tokens=$(IFS=,; echo "${toks[*]}")
channels=$(for t in "${toks[@]}"; do printf '%s.trade,' "$t"; done); channels=${channels%,}

rp=$(free_port)
# earliest: a new group starts at the beginning, so no record produced
# between the assignment and the first fetch can be skipped
"$B/odin-router" --kafka-group "brw-$$" --http-addr "127.0.0.1:$rp" \
    --discovery-interval-ms 200 --kafka-offset-reset earliest \
    --kafka-options "fetch.wait.max.ms=1,topic.metadata.refresh.interval.ms=1000,session.timeout.ms=6000" \
    >"$T/router.log" 2>&1 & pids+=($!)
urls=(); spids=()
for i in 1 2 3; do
    p=$(free_port); urls+=("ws://127.0.0.1:$p/ws")
    SHARD_ID="brw-$$-$i" WS_ADDR="127.0.0.1:$p" SHARD_SOCKET="$T/s$i.sock" SHARD_LEASE_TTL=2 \
        "$B/odin-shard" >"$T/shard$i.log" 2>&1 & pids+=($!); spids+=("${urls[-1]}=$!")
done
for u in "${urls[@]}"; do
    h=${u#ws://}; h=${h%/ws}
    wait_until 15 curl -fsS "http://$h/health" || fail "shard $h did not start"
done
wait_until 20 curl -fsS "http://127.0.0.1:$rp/health" || fail "router did not start"
router_ready() {
    local m; m=$(curl -fsS "http://127.0.0.1:$rp/metrics")
    [ "$(grep -c '^router_shard_queue_bytes{' <<<"$m")" -ge 3 ] &&
        grep -qE '^router_assigned_partitions [1-9]' <<<"$m"
}
wait_until 30 router_ready || fail "router not ready"

# the page, served as make run serves it
python3 -u -m http.server --bind 127.0.0.1 --directory "$clients" 0 >"$T/http.log" 2>&1 & pids+=($!)
page_port=
wait_until 10 grep -q ' port [0-9]' "$T/http.log" || fail "http.server did not start"
page_port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$T/http.log" | head -1)
page="http://127.0.0.1:$page_port/web/?ws=$(IFS=,; echo "${urls[*]}")&channels=$channels&clients=$NCONN&record=1"
echo "page: $page"

shot="$T/live-page.png"
DIR="$T" PAGE_URL="$page" BROWSER="$browser" SCREENSHOT="$shot" TIMEOUT_S="${BROWSER_TIMEOUT_S:-30}" \
    SHARD_PIDS="$(IFS=,; echo "${spids[*]}")" KILL_AFTER="${BROWSER_KILL_AFTER:-$((NCONN * 150))}" \
    MORE_AFTER="${BROWSER_MORE_AFTER:-$((NCONN * 150))}" \
    node "$top/tests/browser/browser_test.mjs" >"$T/browser.out" 2>"$T/browser.log" & bpid=$!; pids+=($bpid)
browser_alive() { kill -0 "$bpid" 2>/dev/null; }
phase() { # file: the browser script reached it, or it ended (a failure it reports)
    wait_until "$1" bash -c "[ -f '$T/$2' ] || ! kill -0 $bpid" || fail "no $2 within $1 s"
    [ -f "$T/$2" ] || { rc=0; wait "$bpid" || rc=$?; cat "$T/browser.out"; fail "browser script ended (exit $rc) before $2: $(tail -5 "$T/browser.log")"; }
}
phase 60 ready
# every connection subscribed every token: each route lists the 3 shards
routes_all() {
    local t
    for t in "${toks[@]}"; do
        [ "$(redis-cli -u "$REDIS_URL" SCARD "${REDIS_PREFIX}route:$t")" -eq 3 ] || return 1
    done
}
wait_until 10 routes_all || fail "routes of the tokens are not on the 3 shards"

"$B/odin-publish" --publish-rate "$RATE" --publish-tokens "$tokens" \
    --publish-topics odin.trades --publish-linger-ms 1 >"$T/publish.out" 2>"$T/publish.log" & ppid=$!
pids+=($ppid)
phase 60 killed
echo "killed shard pid $(cat "$T/killed")"
phase 60 resumed
kill -TERM "$ppid"
wait "$ppid" || fail "odin-publish failed: $(tail -3 "$T/publish.log")"
cat "$T/publish.out"
sent=$(jq -r .sent "$T/publish.out")

# what Kafka holds for our tokens: key, partition, offset
kcat -C -b "$KAFKA_BROKERS" -t odin.trades -o beginning -e -q -f '%k %p %o\n' >"$T/kafka.all" 2>"$T/kcat.log" ||
    fail "kcat: $(tail -3 "$T/kcat.log")"
grep -E "^BRW$$_[0-9]+ " "$T/kafka.all" >"$T/expected" || true
got=$(wc -l <"$T/expected")
[ "$got" -eq "$sent" ] || fail "Kafka holds $got records of our tokens, odin-publish sent $sent"
touch "$T/expected.done"

rc=0; wait "$bpid" || rc=$?
cat "$T/browser.out"
echo "screenshot: $shot"
[ $rc -eq 0 ] || fail "browser: exit $rc; $(jq -r '.failures[]?' "$T/browser.out" 2>/dev/null); $(tail -5 "$T/browser.log")"
jq -e '.ok and .gaps == 0 and .dups == 0 and .refetches == 0 and .resumes >= 1 and
       (.per_connection | all(.exact)) and (.states | all(. == "live")) and .frame_errors_unexpected == 0' \
    "$T/browser.out" >/dev/null || fail "summary"
if [ -n "${BROWSER_SCREENSHOT_OUT:-}" ]; then
    mkdir -p "$(dirname "$BROWSER_SCREENSHOT_OUT")"; cp "$shot" "$BROWSER_SCREENSHOT_OUT"
    echo "screenshot copied to $BROWSER_SCREENSHOT_OUT"
fi
# with permessage-deflate accepted: the surviving shards sent compressed
# messages, which the browser decoded (the exact comparison above)
cases=$(jq -r '.deflate_cases | join(", ")' "$T/browser.out")
compressed=0; have_metric=0
for u in "${urls[@]}"; do
    h=${u#ws://}; h=${h%/ws}
    m=$(curl -fsS "http://$h/metrics" 2>/dev/null) || continue   # the killed one
    n=$(awk '$1 == "ws_deflate_messages_sent_total" { print $2 }' <<<"$m")
    [ -n "$n" ] || continue
    have_metric=1; compressed=$((compressed + ${n%.*}))
done
if [[ "$cases" == *accepted* ]]; then
    [ "$have_metric" -eq 0 ] || [ "$compressed" -gt 0 ] ||
        fail "permessage-deflate accepted but the shards sent no compressed message"
    echo "permessage-deflate: compressed messages sent by the surviving shards: $compressed"
fi
echo "permessage-deflate: Chromium offered '$(jq -r .deflate_offer "$T/browser.out")'; shards answered: $(jq -r '.deflate_cases | join(", ")' "$T/browser.out")"
echo "PASS: $(jq -c '{connections, tokens, expected_per_connection, received, gaps, dups, dups_dropped, resumes, replayed, refetches, deflate_cases, frame_errors}' "$T/browser.out")"
