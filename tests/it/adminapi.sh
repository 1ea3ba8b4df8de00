#!/usr/bin/env bash
# The admin API and the odin-ctl commands on it, end to end: real
# redis-server, the devbroker, an odin-router and two odin-shard processes
# with admin listeners (A with ADMIN_TOKEN, B without), real WebSocket
# clients (odin-watch) subscribed to known channels.
#   - odin-ctl channels: the exact counts, summed over both shards
#   - odin-ctl clients (and the API's cursor/limit paging)
#   - odin-ctl kick: exactly that client is closed, and sees code 4000
#   - odin-ctl publish: the record reaches a subscribed client
#   - refusals: wrong/missing token 401, no token configured 403; exit 1
#   - unknown names (token, shard, client): exit 1 with a message
#   - a SIGSTOPped redis and a SIGSTOPped shard: "timed out after N ms",
#     exit 1, within the bound
#   - the router's /admin/v1/shards and /admin/v1/partitions
# CTL_BIN=... runs another odin-ctl (e.g. an old build) against the same stack.
set -euo pipefail
B=${ODIN_BUILD:?}
CTL_BIN=${CTL_BIN:-$B/odin-ctl}
# shellcheck source=../support/stack.sh
. "${ODIN_TOP:?}/tests/support/stack.sh"
stack_init adminapi
STACK_LOGS="*.log *.err"
export REDIS_URL="$ODIN_REDIS_URL" REDIS_PREFIX="adm$$:" KAFKA_BROKERS="$ODIN_KAFKA_BROKERS"
unset ADMIN_TOKEN
ctl() { "$CTL_BIN" "$@"; }
actl() { ADMIN_TOKEN=sekret-a "$CTL_BIN" "$@"; }
TOK="ADM$$"        # tokens no other test publishes
TOK2="ADX$$"

pa=$(port); pb=$(port); aa=$(port); ab=$(port); rp=$(port)
A="adm-a-$$"; Bid="adm-b-$$"
start_shard a "$A" "$pa" ADMIN_ADDR="127.0.0.1:$aa" ADMIN_TOKEN=sekret-a
start_shard b "$Bid" "$pb" ADMIN_ADDR="127.0.0.1:$ab"; bpid=$SPAWNED
start_router router "$rp" --kafka-group "adm-$$" --admin-token sekret-r --kafka-offset-reset earliest
wait_until 10 health_ok "$aa" || fail "shard A did not start"
wait_until 10 health_ok "$ab" || fail "shard B did not start"
wait_until 15 health_ok "$rp" || fail "router did not start"

# WebSocket clients: on A w1 (TOK.trade, TOK2.trade), w2 (TOK.trade),
# w3 (TOK.liquidity); on B w4 (TOK.trade)
watch() { ws_watch "$1" "ws://127.0.0.1:$2/ws" "$3" --watch-seconds 120; }
watch w1 "$pa" "$TOK.trade,$TOK2.trade"; w1=$SPAWNED
watch w2 "$pa" "$TOK.trade"; w2=$SPAWNED
watch w3 "$pa" "$TOK.liquidity"; w3=$SPAWNED
watch w4 "$pb" "$TOK.trade"; w4=$SPAWNED
want="$TOK.liquidity 1 $A=1
$TOK.trade 3 $A=2,$Bid=1
$TOK2.trade 1 $A=1"
counts() { actl channels | awk 'NR>1{print $1, $2, $3}' | grep "^AD[MX]$$\."; }
all_subscribed() { [ "$(counts)" = "$want" ]; }
wait_until 15 all_subscribed || fail "channels: $(actl channels) want $want"

# channels: the table and --json agree, the totals are exact
out=$(actl channels) || fail "channels exit $?: $out"
[ "$(actl --json channels | jq -r ".channels[] | select(.channel==\"$TOK.trade\") | .subscribers")" = 3 ] \
    || fail "channels --json"
[ "$(actl --json channels | jq -r ".channels[] | select(.channel==\"$TOK.trade\") | .shards[\"$Bid\"]")" = 1 ] \
    || fail "channels --json per shard"
# the API pages: limit 1 -> one channel and a cursor, which continues after it
c1=$(curl -fsS -H "Authorization: Bearer sekret-a" "http://127.0.0.1:$aa/admin/v1/channels?limit=1")
[ "$(jq '.channels | length' <<<"$c1")" = 1 ] && [ "$(jq .total <<<"$c1")" = 3 ] || fail "channels page 1: $c1"
n1=$(jq -r .next <<<"$c1")
c2=$(curl -fsS -H "Authorization: Bearer sekret-a" "http://127.0.0.1:$aa/admin/v1/channels?limit=5&cursor=$n1")
[ "$(jq -c '[.channels[].channel]' <<<"$c2")" = "[\"$TOK.trade\",\"$TOK2.trade\"]" ] && \
    [ "$(jq -r .next <<<"$c2")" = null ] || fail "channels page 2 after $n1: $c2"
# the same channel counts through odin-ctl with a page of 1 (three requests)
[ "$(CTL_PAGE_SIZE=1 actl channels | awk 'NR>1{print $1, $2, $3}' | grep "^AD[MX]$$\.")" = "$want" ] \
    || fail "channels with CTL_PAGE_SIZE=1"

# clients: all of A, in pages of 1 through odin-ctl, and by hand through the API
[ "$(CTL_PAGE_SIZE=1 actl --json clients "$A" | jq '.clients | length')" = 3 ] \
    || fail "clients A: $(actl clients "$A")"
p1=$(curl -fsS -H "Authorization: Bearer sekret-a" "http://127.0.0.1:$aa/admin/v1/clients?limit=2")
[ "$(jq '.clients | length' <<<"$p1")" = 2 ] && [ "$(jq .total <<<"$p1")" = 3 ] || fail "clients page 1: $p1"
nx=$(jq -r .next <<<"$p1")
p2=$(curl -fsS -H "Authorization: Bearer sekret-a" "http://127.0.0.1:$aa/admin/v1/clients?limit=2&cursor=$nx")
[ "$(jq '.clients | length' <<<"$p2")" = 1 ] && [ "$(jq -r .next <<<"$p2")" = null ] || fail "clients page 2: $p2"
[ "$( (jq '.clients[].id' <<<"$p1"; jq '.clients[].id' <<<"$p2") | sort -u | wc -l)" = 3 ] || fail "ids repeat"
out=$(actl clients "$A")
grep -q "127.0.0.1:[0-9]* .* open .*$TOK.trade,$TOK2.trade" <<<"$out" || fail "clients table: $out"
# one page from a cursor: "(more: ...)" names the next
top=$(jq '.clients[0].id' <<<"$p1")
out=$(CTL_PAGE_SIZE=1 actl clients "$A" "$((top + 1))" 2>"$T/more.err") || fail "clients from cursor"
[ "$(grep -c ' open ' <<<"$out")" = 1 ] && grep -q "more: odin-ctl clients $A $top" "$T/more.err" \
    || fail "one page: $out $(cat "$T/more.err")"
# B has no ADMIN_TOKEN: its read-only endpoints are open
[ "$(ctl --json clients "$Bid" | jq '.clients | length')" = 1 ] || fail "clients B without a token"

# refusals: no token / wrong token on A (401), a mutating call on B, which
# has no ADMIN_TOKEN (403); each a message and exit 1
rc=0; ctl clients "$A" >/dev/null 2>"$T/e401.err" || rc=$?
[ $rc = 1 ] && grep -q "refused the request (401): missing bearer token" "$T/e401.err" \
    || fail "no token: $rc $(cat "$T/e401.err")"
rc=0; ADMIN_TOKEN=wrong ctl channels >/dev/null 2>"$T/ewrong.err" || rc=$?
[ $rc = 1 ] && grep -q "(401): wrong bearer token (check ADMIN_TOKEN)" "$T/ewrong.err" \
    || fail "wrong token: $rc $(cat "$T/ewrong.err")"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer sekret-a2' \
    "http://127.0.0.1:$aa/admin/v1/clients")" = 401 ] || fail "curl wrong token"
b_id=$(ctl --json clients "$Bid" | jq '.clients[0].id')
rc=0; actl kick "$Bid" "$b_id" >/dev/null 2>"$T/e403.err" || rc=$?
[ $rc = 1 ] && grep -q "(403): ADMIN_TOKEN is not set" "$T/e403.err" || fail "403: $rc $(cat "$T/e403.err")"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$ab/admin/v1/drain")" = 403 ] \
    || fail "drain without a token configured"
kill -0 "$w4" || fail "w4 was closed by a refused kick"
m=$(metrics "$aa")
grep -q '^ws_admin_api_rejections_total{reason="unauthorized"} [1-9]' <<<"$m" || fail "401 not counted"

# kick: w2 (the client of A with only TOK.trade) closes with 4000; the others stay
w2id=$(actl --json clients "$A" | jq ".clients[] | select(.channels==[\"$TOK.trade\"]) | .id")
[ -n "$w2id" ] || fail "w2 not listed"
out=$(actl kick "$A" "$w2id") || fail "kick exit $?: $out"
grep -q "closed with code 4000" <<<"$out" || fail "kick: $out"
rc=0; wait "$w2" || rc=$?
grep -q "server closed the connection (code 4000)" "$T/w2.log" || fail "w2 saw: $(cat "$T/w2.log")"
kill -0 "$w1" && kill -0 "$w3" && kill -0 "$w4" || fail "another client was closed"
want_after="$TOK.liquidity 1 $A=1
$TOK.trade 2 $A=1,$Bid=1
$TOK2.trade 1 $A=1"
kicked() { [ "$(counts)" = "$want_after" ]; }
wait_until 10 kicked || fail "after the kick: $(actl channels)"
metric_is "$aa" ws_admin_api_disconnects_total 1 || fail "kick not counted"
grep -q '"msg":"admin: disconnecting client".*"client":'"$w2id" "$T/a.log" || fail "kick not logged"
rc=0; actl kick "$A" "$w2id" 2>"$T/kick2.err" || rc=$?
[ $rc = 1 ] && grep -q "answered 404: no open client $w2id on this shard" "$T/kick2.err" || fail "kick again: $rc"

# the router: its admin API wants its token; shards, partitions, hold state
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$rp/admin/v1/shards")" = 401 ] \
    || fail "router without a token"
rt() { curl -fsS -H "Authorization: Bearer sekret-r" "http://127.0.0.1:$rp/admin/v1/$1"; }
both_ready() { [ "$(rt shards | jq "[.shards[] | select(.id==\"$A\" or .id==\"$Bid\") | select(.state==\"ready\" and .connected)] | length")" = 2 ]; }
wait_until 15 both_ready || fail "router shards: $(rt shards)"
# a router holds consumption for a moment when a batch arrives before the
# shards' routes are confirmed (on a slot whose broker already has records,
# that can be after the first look): the body is read until the hold is over
assigned() { rt partitions | jq -e '.assigned > 0 and (.partitions | length) == .assigned'; }
wait_until 15 assigned || fail "router partitions: $(rt partitions)"
not_holding() { [ "$(rt shards | jq '.router.holding')" = false ]; }
wait_until 15 not_holding || fail "router still holding: $(rt shards)"
body_ok() { rt shards | jq -e '.router.holding == false and (.shards[0].drops | has("queue_full"))' >/dev/null; }
wait_until 15 body_ok || fail "router shards body: $(rt shards)"

# publish: a record for TOK2.trade reaches w1 (and nobody else subscribes to it)
out=$(ctl publish "$TOK2" trade '{"price":42.5,"note":"adminapi"}') || fail "publish exit $?: $out"
grep -q "published to odin.trades \[partition [0-9]*, offset [0-9]*\], key $TOK2" <<<"$out" \
    || fail "publish: $out"
got() { ws_got w1 "\"channel\":\"$TOK2.trade\".*\"note\":\"adminapi\""; }
wait_until 30 got || fail "w1 did not get the record: $(tail -3 "$T/w1.out")"
lag_known() { rt partitions | jq -e '[.partitions[] | select(.topic=="odin.trades" and .position >= 0 and .lag >= 0 and .stored == .position)] | length > 0'; }
wait_until 15 lag_known || fail "positions: $(rt partitions)"
# the default category is trade; an unknown category or bad JSON is refused
rc=0; ctl publish "$TOK2" nosuchcat '{}' 2>"$T/cat.err" || rc=$?
[ $rc = 1 ] && grep -q "unknown category 'nosuchcat'" "$T/cat.err" || fail "unknown category: $rc"
rc=0; ctl publish "$TOK2" '{nope' 2>/dev/null || rc=$?; [ $rc = 2 ] || fail "bad JSON: $rc"

# unknown names: exit 1 with a message
for args in "routes NOPE$$" "tokens nope-$$" "clients nope-$$" "kick nope-$$ 1" "drain nope-$$"; do
    rc=0; actl $args >/dev/null 2>"$T/unknown.err" || rc=$?
    [ $rc = 1 ] && grep -q "unknown" "$T/unknown.err" || fail "$args: exit $rc: $(cat "$T/unknown.err")"
done
rc=0; actl kick "$A" 99999999 2>/dev/null || rc=$?; [ $rc = 1 ] || fail "unknown client: $rc"

# drain / undrain through the admin API (A has a token): no signal needed
out=$(actl drain "$A") && grep -q "(admin API)" <<<"$out" || fail "drain api: $out"
metric_is "$aa" shard_draining 1 || fail "not draining"
out=$(actl drain "$A") && grep -q "already draining" <<<"$out" || fail "drain twice: $out"
actl undrain "$A" >/dev/null || fail undrain
metric_is "$aa" shard_draining 0 || fail "still draining"

# ADMIN_RATE applies to the admin API, in a bucket of its own: C allows a
# burst of 2, then 429 (Retry-After: 1); its /health is not affected.  An
# ADMIN_TOKEN without ADMIN_ADDR is warned about (no admin API at all).
pc=$(port); ac=$(port)
start_shard c "adm-c-$$" "$pc" ADMIN_ADDR="127.0.0.1:$ac" ADMIN_RATE=0.001 ADMIN_BURST=2
wait_until 10 health_ok "$ac" || fail "shard C did not start"
codes=$(for _ in 1 2 3; do curl -s -o /dev/null -w '%{http_code} ' "http://127.0.0.1:$ac/admin/v1/clients"; done)
[ "$codes" = "200 200 429 " ] || fail "admin API rate: $codes"
# (whole replies into variables first: `curl | grep -q` fails under pipefail
# when grep exits before curl has written everything)
h=$(curl -s -D - -o /dev/null "http://127.0.0.1:$ac/admin/v1/channels")
grep -qi '^Retry-After: 1' <<<"$h" || fail "Retry-After: $h"
curl -fsS -o /dev/null "http://127.0.0.1:$ac/health" || fail "/health shares the admin API bucket"
m=$(metrics "$ac") || fail "C /metrics"
grep -q '^ws_admin_api_rejections_total{reason="ratelimit"} 2$' <<<"$m" \
    || fail "429 not counted: $(grep ws_admin_api_rejections <<<"$m")"
pd=$(port)
start_shard d "adm-d-$$" "$pd" ADMIN_TOKEN=x
wait_log 10 "$T/d.log" "ADMIN_TOKEN is set but ADMIN_ADDR is not" || fail "no warning for ADMIN_TOKEN without ADMIN_ADDR"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pd/admin/v1/clients")" = 404 ] \
    || fail "the admin API on WS_ADDR"

# a hung shard: SIGSTOP B; clients B times out within the bound
kill -STOP "$bpid"; stack_stopped "$bpid"
t0=$(date +%s%N)
rc=0; CTL_TIMEOUT_MS=500 ctl clients "$Bid" >/dev/null 2>"$T/hung.err" || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
kill -CONT "$bpid"
[ $rc = 1 ] && grep -q "did not answer: timed out after 500 ms" "$T/hung.err" || fail "hung shard: $rc $(cat "$T/hung.err")"
[ $ms -lt 3000 ] || fail "hung shard took $ms ms"
echo "hung shard: exit $rc after $ms ms: $(cat "$T/hung.err")"

# a hung Redis: a private redis-server, SIGSTOPped
rport=$(port)
spawn redis2 redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no; r2=$SPAWNED
wait_until 10 redis-cli -p "$rport" ping || fail "second redis"
kill -STOP "$r2"; stack_stopped "$r2"
for cmd in shards "routes X" "tokens y" channels; do
    t0=$(date +%s%N)
    rc=0; CTL_TIMEOUT_MS=500 REDIS_URL="redis://127.0.0.1:$rport" ctl $cmd >/dev/null 2>"$T/hungr.err" || rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ $rc = 1 ] && grep -q "redis://127.0.0.1:$rport did not answer: timed out after 500 ms" "$T/hungr.err" \
        || fail "hung redis ($cmd): exit $rc: $(cat "$T/hungr.err")"
    [ $ms -lt 3000 ] || fail "hung redis ($cmd) took $ms ms"
done
echo "hung redis: exit $rc after $ms ms: $(cat "$T/hungr.err")"
# ... while CTL_SHARDS names the shards' admin listeners: no Redis needed
export CTL_SHARDS="$A=127.0.0.1:$aa,$Bid=127.0.0.1:$ab"
out=$(CTL_TIMEOUT_MS=500 REDIS_URL="redis://127.0.0.1:$rport" actl channels) || fail "CTL_SHARDS channels: $out"
[ "$(awk 'NR>1{print $1, $2, $3}' <<<"$out" | grep "^AD[MX]$$\.")" = "$want_after" ] || fail "CTL_SHARDS: $out"
[ "$(CTL_TIMEOUT_MS=500 REDIS_URL="redis://127.0.0.1:$rport" actl --json clients "$Bid" | jq '.clients | length')" = 1 ] \
    || fail "CTL_SHARDS clients"
rc=0; REDIS_URL="redis://127.0.0.1:$rport" actl clients nope 2>"$T/st.err" || rc=$?
[ $rc = 1 ] && grep -q "unknown shard 'nope': not in CTL_SHARDS" "$T/st.err" || fail "CTL_SHARDS unknown: $rc"
rc=0; CTL_SHARDS=junk actl channels 2>/dev/null || rc=$?; [ $rc = 2 ] || fail "bad CTL_SHARDS: $rc"
unset CTL_SHARDS
kill -CONT "$r2"
echo "adminapi: ok"
