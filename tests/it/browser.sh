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
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"
stack_init browser
STACK_LOGS="*.log browser.out"
NCONN=${BROWSER_CONNS:-3}
NTOK=${BROWSER_TOKENS:-3}
RATE=${BROWSER_RATE:-120}
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

rp=$(port)
# earliest: a new group starts at the beginning, so no record produced
# between the assignment and the first fetch can be skipped
start_router router "$rp" --kafka-group "brw-$$" \
    --discovery-interval-ms 200 --kafka-offset-reset earliest \
    --kafka-options "fetch.wait.max.ms=1,topic.metadata.refresh.interval.ms=1000,session.timeout.ms=6000"
start_shards 3 "brw-$$" SHARD_LEASE_TTL=2
urls=("${SHARD_URLS[@]}"); spids=()
for i in 0 1 2; do spids+=("${urls[$i]}=${SHARD_PIDS[$i]}"); done
for p in "${SHARD_PORTS[@]}"; do
    wait_until 15 health_ok "$p" || fail "shard 127.0.0.1:$p did not start"
done
wait_until 20 health_ok "$rp" || fail "router did not start"
wait_until 30 router_serves "$rp" 3 || fail "router not ready"

# the page, served as make run serves it
spawn http python3 -u -m http.server --bind 127.0.0.1 --directory "$clients" 0
page_port=
wait_log 10 "$T/http.log" ' port [0-9]' || fail "http.server did not start"
page_port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$T/http.log" | head -1)
page="http://127.0.0.1:$page_port/web/?ws=$(IFS=,; echo "${urls[*]}")&channels=$channels&clients=$NCONN&record=1"
echo "page: $page"

shot="$T/live-page.png"
spawn_out browser env DIR="$T" PAGE_URL="$page" BROWSER="$browser" SCREENSHOT="$shot" \
    TIMEOUT_S="${BROWSER_TIMEOUT_S:-30}" SHARD_PIDS="$(IFS=,; echo "${spids[*]}")" \
    KILL_AFTER="${BROWSER_KILL_AFTER:-$((NCONN * 150))}" MORE_AFTER="${BROWSER_MORE_AFTER:-$((NCONN * 150))}" \
    node "$top/tests/browser/browser_test.mjs"
bpid=$SPAWNED
# each phase: the browser script creates its marker file (or ends: a failure it reports)
phase() { await_marker "$1" "$T/$2" "$bpid" "browser script"; }
phase 60 ready
# every connection subscribed every token: each route lists the 3 shards
routes_all() {
    local t
    for t in "${toks[@]}"; do
        [ "$(redis-cli -u "$REDIS_URL" SCARD "${REDIS_PREFIX}route:$t")" -eq 3 ] || return 1
    done
}
wait_until 10 routes_all || fail "routes of the tokens are not on the 3 shards"

spawn_out publish "$B/odin-publish" --publish-rate "$RATE" --publish-tokens "$tokens" \
    --publish-topics odin.trades --publish-linger-ms 1
ppid=$SPAWNED
phase 60 killed
echo "killed shard pid $(cat "$T/killed")"
phase 60 resumed
kill -TERM "$ppid"
wait "$ppid" || fail "odin-publish failed: $(tail -3 "$T/publish.log")"
cat "$T/publish.out"
sent=$(jq -r .sent "$T/publish.out")

# what Kafka holds for our tokens: key, partition, offset
kafka_expected odin.trades "^BRW$$_[0-9]+ " "$sent"

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
for p in "${SHARD_PORTS[@]}"; do
    m=$(metrics "$p" 2>/dev/null) || continue   # the killed one
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
