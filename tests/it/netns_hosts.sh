#!/usr/bin/env bash
# Shards on several hosts (issue 15): three network namespaces joined by veth
# pairs, made and removed here.
#
#   router host (ns R): odin-router, redis-server, odin-devbroker, publishers
#        ├── 10.213.1.1/30 ══ veth ══ 10.213.1.2/30 ── shard host A (ns A)
#        └── 10.213.2.1/30 ══ veth ══ 10.213.2.2/30 ── shard host B (ns B)
#
# Each shard host runs one odin-shard with SHARD_TCP_ADDR on its uplink
# address, SHARD_ENDPOINT=tcp://..., SHARD_INGRESS_SECRET, Redis over the
# link, and two odin-watch clients inside its namespace (the clients' side of
# the host stays up when its backend link goes down).  Nothing is added to the
# root namespace: every address and route lives in the test's namespaces.
#
# Records are numbered per token and topic by odin-publish (data.token_seq);
# each phase uses its own topic, so each phase is counted on its own
# channels (<token>.<category>), per client and per token:
#   1 trade      both hosts up: every record exactly once on both hosts.
#   2 liquidity  published continuously while host B's link is down: B's
#                lease expires and the router sweeps its routes; A gets
#                every record exactly once.
#   3 metadata   published continuously while B's link comes back: A gets
#                every record; B gets, per token, every record from its
#                first one after it re-registered to the last (no gap, no
#                duplicate, in order).
#   4 analytics  after B rejoined: every record exactly once on both hosts.
# Then a router with a wrong SHARD_INGRESS_SECRET is refused by both shards.
#
# Exits 77 (tools/run-tests.sh prints SKIP) when the kernel does not let us
# create network namespaces or veth pairs (not root, no CAP_SYS_ADMIN, a
# container without them).
set -euo pipefail
B=${ODIN_BUILD:?run through tools/run-tests.sh}
T=$(mktemp -d "${ODIN_TMP:?}/netns.XXXXXX")
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v ip >/dev/null || fail "ip (iproute2) is not installed: tools/deps.sh installs it"

NS_R=odin-r-$$ NS_A=odin-a-$$ NS_B=odin-b-$$
SECRET="netns-secret-$$-$RANDOM"
PREFIX=odin:
pids=()
made_ns=()

cleanup() {
    set +e
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
    done
    for ns in "${made_ns[@]}"; do ip netns del "$ns" 2>/dev/null; done
}
trap cleanup EXIT

skip() { echo "SKIP: $*"; exit 77; }

# ---- network ---------------------------------------------------------------
for ns in "$NS_R" "$NS_A" "$NS_B"; do
    ip netns add "$ns" 2>"$T/ip.err" ||
        skip "cannot create network namespaces here ('ip netns add': $(head -1 "$T/ip.err")); needs root with CAP_SYS_ADMIN"
    made_ns+=("$ns")
    ip -n "$ns" link set lo up
done
# the router host's ends are named after the host they lead to; each shard
# host's end is its "up0" (its only way to Redis, Kafka and the router)
ip -n "$NS_R" link add to-a type veth peer name up0 netns "$NS_A" 2>"$T/ip.err" ||
    skip "cannot create veth pairs here ('ip link add type veth': $(head -1 "$T/ip.err"))"
ip -n "$NS_R" link add to-b type veth peer name up0 netns "$NS_B"
ip -n "$NS_R" addr add 10.213.1.1/30 dev to-a
ip -n "$NS_R" addr add 10.213.2.1/30 dev to-b
ip -n "$NS_A" addr add 10.213.1.2/30 dev up0
ip -n "$NS_B" addr add 10.213.2.2/30 dev up0
ip -n "$NS_R" link set to-a up
ip -n "$NS_R" link set to-b up
ip -n "$NS_A" link set up0 up
ip -n "$NS_B" link set up0 up

# ---- helpers ---------------------------------------------------------------
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
# wait_for DESCRIPTION SECONDS CMD...: poll CMD every 50 ms, fail past SECONDS
wait_for() {
    local what=$1 secs=$2 end=$(( $(now_ms) + $2 * 1000 )); shift 2
    until "$@"; do
        [ "$(now_ms)" -lt "$end" ] || fail "timed out after $secs s waiting for: $what"
        sleep 0.05
    done
}
rcli() { ip netns exec "$NS_R" redis-cli -p 6379 "$@"; }
# metric NS PORT SERIES: value of one series of a /metrics page (empty if none)
metric() {
    ip netns exec "$1" curl -s --max-time 2 "http://127.0.0.1:$2/metrics" |
        awk -v s="$3" '$1 == s && !seen { print $2; seen = 1 }'   # no early exit: SIGPIPE + pipefail
}
metric_is() { [ "$(metric "$1" "$2" "$3")" = "$4" ]; }
metric_ge() { local v; v=$(metric "$1" "$2" "$3"); [ -n "$v" ] && [ "${v%.*}" -ge "$4" ]; }
lines() { grep -c "$2" "$1" 2>/dev/null || true; }

# ---- the router host: Redis, Kafka (devbroker), router ---------------------
ip netns exec "$NS_R" redis-server --port 6379 --bind 0.0.0.0 --protected-mode no \
    --dir "$T" --save '' --appendonly no --daemonize no --loglevel warning \
    >"$T/redis.log" 2>&1 &
pids+=($!)
wait_for "redis-server in the router host" 10 eval 'rcli ping >/dev/null 2>&1'
# the devbroker listens on 127.0.0.1 only: Kafka lives on the router host
ip netns exec "$NS_R" "$B/odin-devbroker" --bootstrap-file "$T/kafka.bootstrap" \
    >"$T/devbroker.out" 2>"$T/devbroker.log" &
pids+=($!)
wait_for "odin-devbroker" 20 test -s "$T/kafka.bootstrap"
BROKERS=$(cat "$T/kafka.bootstrap")

# start_router NAME HTTP_PORT GROUP SECRET
start_router() {
    KAFKA_BROKERS="$BROKERS" KAFKA_GROUP="$3" KAFKA_OFFSET_RESET=earliest \
    REDIS_URL=redis://127.0.0.1:6379 SHARD_INGRESS_SECRET="$4" ROUTER_ID="$1" \
    HTTP_ADDR="127.0.0.1:$2" DISCOVERY_INTERVAL_MS=200 SHARD_DOWN_GRACE_MS=2000 \
    SHARD_RECONNECT_MAX_MS=1000 LOG_LEVEL=info \
        ip netns exec "$NS_R" "$B/odin-router" >"$T/$1.log" 2>&1 &
    pids+=($!)
}
start_router router 8080 netns "$SECRET"
ROUTER=$!

# ---- shard hosts -----------------------------------------------------------
# start_shard NAME NS ADDR
start_shard() {
    SHARD_ID="host-$1" WS_ADDR=0.0.0.0:3002 SHARD_SOCKET="$T/$1.sock" \
    SHARD_TCP_ADDR="$3:7001" SHARD_ENDPOINT="tcp://$3:7001" \
    SHARD_INGRESS_SECRET="$SECRET" REDIS_URL="redis://${3%.2}.1:6379" \
    SHARD_LEASE_TTL=2 REDIS_TIMEOUT=1 LOG_LEVEL=info \
        ip netns exec "$2" "$B/odin-shard" >"$T/shard-$1.log" 2>&1 &
    pids+=($!)
}
start_shard a "$NS_A" 10.213.1.2
SHARD_A=$!
start_shard b "$NS_B" 10.213.2.2
SHARD_B=$!
listening() { ip netns exec "$1" curl -s -o /dev/null --max-time 2 http://127.0.0.1:3002/health; }
wait_for "shard host A listening" 30 listening "$NS_A"
wait_for "shard host B listening" 30 listening "$NS_B"

# clients: two per host, each on its own token and the shared one (HAB), on
# the four phase categories
CATS=(trade liquidity metadata analytics)
TOPICS=(odin.trades odin.liquidity odin.metadata odin.analytics)
A_TOKENS=HA1,HA2,HAB   # published by the "a" publishers: every one is on host A
B_TOKENS=HB1,HB2       # published by the "b" publishers: only on host B
CLIENTS=(a1 a2 b1 b2)
declare -A C_NS=([a1]=$NS_A [a2]=$NS_A [b1]=$NS_B [b2]=$NS_B)
declare -A C_TOKENS=([a1]=HA1,HAB [a2]=HA2,HAB [b1]=HB1,HAB [b2]=HB2,HAB)
for c in "${CLIENTS[@]}"; do
    chans=()
    for t in ${C_TOKENS[$c]//,/ }; do for k in "${CATS[@]}"; do chans+=("$t.$k"); done; done
    WATCH_URL=ws://127.0.0.1:3002/ws WATCH_CHANNELS=$(IFS=,; echo "${chans[*]}") LOG_LEVEL=warn \
        ip netns exec "${C_NS[$c]}" "$B/odin-watch" >"$T/client-$c.out" 2>"$T/client-$c.err" &
    pids+=($!)
done
for c in "${CLIENTS[@]}"; do
    wait_for "client $c subscribed" 30 grep -q '"type":"subscription_ack"' "$T/client-$c.out"
done

routes_have() { # SHARD TOKEN...: every token's route set holds SHARD
    local s=$1; shift
    for t in "$@"; do [ "$(rcli SISMEMBER "${PREFIX}route:$t" "$s")" = 1 ] || return 1; done
}
routes_lack() {
    local s=$1; shift
    for t in "$@"; do [ "$(rcli SISMEMBER "${PREFIX}route:$t" "$s")" = 0 ] || return 1; done
}
synced() { # SHARD: its lease confirms every route under the current epoch
    local e; e=$(rcli GET "${PREFIX}epoch")
    [ -n "$e" ] && [ "$(rcli HGET "${PREFIX}shard:$1" synced)" = "$e" ]
}
b_expired() { [ "$(rcli EXISTS "${PREFIX}shard:host-b")" = 0 ] && routes_lack host-b HB1 HB2 HAB; }
b_back() {
    synced host-b && routes_have host-b HB1 HB2 HAB && metric_is "$NS_R" 8080 router_shards_connected 2
}
wait_for "host A's routes" 30 routes_have host-a HA1 HA2 HAB
wait_for "host B's routes" 30 routes_have host-b HB1 HB2 HAB
wait_for "host A synced" 30 synced host-a
wait_for "host B synced" 30 synced host-b
wait_for "router connected to both shard hosts over TCP" 30 metric_is "$NS_R" 8080 router_shards_connected 2
for s in a b; do
    ep=$(rcli HGET "${PREFIX}shard:host-$s" endpoint)
    [[ "$ep" == tcp://10.213.* ]] || fail "host-$s registered endpoint '$ep', want tcp://10.213..."
    grep -q '"router authenticated"' "$T/shard-$s.log" || fail "host-$s: no authenticated router"
done

# publish NAME TOKENS TOPIC COUNT RATE: in the router host, in the background
# (COUNT 0: until SIGTERM); the JSON summary goes to $T/pub-NAME.json
declare -A PUB_PID
publish() {
    KAFKA_BROKERS="$BROKERS" PUBLISH_TOKENS="$2" PUBLISH_TOPICS="$3" PUBLISH_COUNT="$4" \
    PUBLISH_RATE="$5" PUBLISH_LINGER_MS=1 LOG_LEVEL=warn \
        ip netns exec "$NS_R" "$B/odin-publish" >"$T/pub-$1.json" 2>"$T/pub-$1.log" &
    PUB_PID[$1]=$!
    pids+=($!)
}
# publish_end NAME [SIGNAL]: wait for the publisher (signalled first if
# given), check that Kafka acknowledged every record, SENT[NAME] = its count
declare -A SENT
publish_end() {
    [ -z "${2:-}" ] || kill "-$2" "${PUB_PID[$1]}"
    local rc=0; wait "${PUB_PID[$1]}" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$T/pub-$1.log" >&2; fail "publisher $1 exited $rc"; }
    jq -e '.errors == 0 and .undelivered == 0' "$T/pub-$1.json" >/dev/null ||
        fail "publisher $1: $(cat "$T/pub-$1.json")"
    SENT[$1]=$(jq -r .sent "$T/pub-$1.json")
}
# chan CLIENT TOKEN CAT: live records the client has on TOKEN.CAT
chan() { lines "$T/client-$1.out" "\"channel\":\"$2\.$3\""; }
# received_at_least CAT N CLIENT...: each client has N live records of CAT
received_at_least() {
    local cat=$1 n=$2; shift 2
    for c in "$@"; do [ "$(lines "$T/client-$c.out" "\"channel\":\"[A-Z0-9]*\.$cat\"")" -ge "$n" ] || return 1; done
}
# all_received CAT SENT_A [SENT_B]: both A clients (and B clients) hold as
# many records of CAT as were published for their tokens (each channel can
# only reach its token's total, so the sums reach the totals only when every
# channel has; duplicates and order are checked by the analysis below)
all_received() {
    local cat=$1 hab
    hab=$(chan a1 HAB "$cat")
    [ $(( $(chan a1 HA1 "$cat") + $(chan a2 HA2 "$cat") + hab )) -ge "$2" ] || return 1
    [ "$(chan a2 HAB "$cat")" -ge "$hab" ] || return 1
    [ -n "${3:-}" ] || return 0
    [ $(( $(chan b1 HB1 "$cat") + $(chan b2 HB2 "$cat") )) -ge "$3" ] &&
        [ "$(chan b1 HAB "$cat")" -ge "$hab" ] && [ "$(chan b2 HAB "$cat")" -ge "$hab" ]
}

echo "network: router host $NS_R, shard hosts $NS_A (10.213.1.2) and $NS_B (10.213.2.2); routes and leases in place"

# ---- phase 1: both hosts up --------------------------------------------------
publish a1 "$A_TOKENS" odin.trades 300 400
publish b1 "$B_TOKENS" odin.trades 200 400
publish_end a1; publish_end b1
wait_for "phase 1 delivered" 60 all_received trade "${SENT[a1]}" "${SENT[b1]}"

# ---- phase 2: host B's link down -----------------------------------------------
publish a2 "$A_TOKENS" odin.liquidity 0 150
publish b2 "$B_TOKENS" odin.liquidity 0 100
wait_for "phase 2 records flowing" 30 received_at_least liquidity 10 a1 a2 b1 b2
ip -n "$NS_R" link set to-b down
t_cut=$(now_ms)
wait_for "host B's lease and routes to expire" 60 b_expired
t_expired=$(now_ms)
wait_for "router to see host B gone" 30 metric_is "$NS_R" 8080 router_shards_connected 1
n1=$(lines "$T/client-a1.out" '\.liquidity"'); n2=$(lines "$T/client-a2.out" '\.liquidity"')
wait_for "host A still receiving after B expired" 30 \
    received_at_least liquidity $(( (n1 > n2 ? n1 : n2) + 30 )) a1 a2
publish_end a2 TERM; publish_end b2 TERM
grep -q '"shard lease expired; cleaning its routes","shard":"host-b"' "$T/router.log" ||
    fail "router log: no cleaning of host-b"
metric_ge "$NS_R" 8080 router_shards_cleaned_total 1 || fail "router_shards_cleaned_total"
metric_ge "$NS_R" 8080 router_shard_grace_total 1 || fail "router_shard_grace_total"
drops_b=$(metric "$NS_R" 8080 'router_drops_total{reason="shard_down",shard="host-b"}')
drops_a=$(ip netns exec "$NS_R" curl -s http://127.0.0.1:8080/metrics |
          awk '/^router_drops_total\{.*shard="host-a"/ { s += $2 } END { print s + 0 }')
[ "$drops_a" = 0 ] || fail "router dropped $drops_a records for host A"
wait_for "phase 2 delivered to host A" 60 all_received liquidity "${SENT[a2]}"

# ---- phase 3: host B's link back, under traffic --------------------------------
publish a3 "$A_TOKENS" odin.metadata 0 150
publish b3 "$B_TOKENS" odin.metadata 0 100
wait_for "phase 3 records flowing on host A" 30 received_at_least metadata 10 a1 a2
for c in b1 b2; do cp "$T/client-$c.out" "$T/client-$c.at-link-up"; done
ip -n "$NS_R" link set to-b up
t_up=$(now_ms)
wait_for "host B to re-register and the router to reconnect" 60 b_back
t_back=$(now_ms)
n1=$(lines "$T/client-b1.out" '\.metadata"'); n2=$(lines "$T/client-b2.out" '\.metadata"')
wait_for "host B receiving again" 30 received_at_least metadata $(( (n1 > n2 ? n1 : n2) + 30 )) b1 b2
publish_end a3 TERM; publish_end b3 TERM
[ "$(grep -c '"router authenticated"' "$T/shard-b.log")" -ge 2 ] ||
    fail "host-b: the router did not authenticate again after the link came back"
wait_for "phase 3 delivered to host A" 60 all_received metadata "${SENT[a3]}"

# ---- phase 4: both hosts up again -----------------------------------------------
publish a4 "$A_TOKENS" odin.analytics 300 400
publish b4 "$B_TOKENS" odin.analytics 200 400
publish_end a4; publish_end b4
wait_for "phase 4 delivered" 60 all_received analytics "${SENT[a4]}" "${SENT[b4]}"

# ---- a router with the wrong secret is refused --------------------------------
start_router intruder 8081 netns-intruder "wrong-$SECRET"
INTRUDER=$!
refused() { grep "SHARD_INGRESS_SECRET differs" "$T/intruder.log" | grep -q "\"shard\":\"host-$1\""; }
wait_for "the wrong-secret router refused by host A" 30 refused a
wait_for "the wrong-secret router refused by host B" 30 refused b
metric_is "$NS_R" 8081 router_shards_connected 0 || fail "the wrong-secret router is connected"
refused_a=$(metric "$NS_A" 3002 shard_ingress_auth_failures_total)
refused_b=$(metric "$NS_B" 3002 shard_ingress_auth_failures_total)
# stop_ok NAME PID: SIGTERM, and the process must exit 0 within 10 s (ASan
# builds report leaks and errors through the exit status)
stop_ok() {
    kill -TERM "$2"
    ( sleep 10; kill -KILL "$2" 2>/dev/null ) &
    local rc=0 watchdog=$!
    wait "$2" || rc=$?
    kill "$watchdog" 2>/dev/null || true
    [ "$rc" -eq 0 ] || { tail -20 "$T/$1.log" >&2; fail "$1 exited $rc after SIGTERM (137: not within 10 s)"; }
}
stop_ok intruder "$INTRUDER"

# ---- the counts, per client and token ------------------------------------------
# what Kafka holds per token and topic (the publishers' totals must agree)
for i in 0 1 2 3; do
    ip netns exec "$NS_R" kcat -b "$BROKERS" -C -t "${TOPICS[$i]}" -o beginning -e -q -f '%k\n' |
        sort | uniq -c >"$T/kafka-${CATS[$i]}.counts"
done
python3 - "$T" "${SENT[a1]}" "${SENT[b1]}" "${SENT[a2]}" "${SENT[b2]}" \
    "${SENT[a3]}" "${SENT[b3]}" "${SENT[a4]}" "${SENT[b4]}" <<'PY'
import json, sys
T = sys.argv[1]
sent = [int(x) for x in sys.argv[2:]]          # a1 b1 a2 b2 a3 b3 a4 b4
cats = ["trade", "liquidity", "metadata", "analytics"]
names = ["1-both-up", "2-b-link-down", "3-b-link-back", "4-b-rejoined"]
host = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
toks = {"a1": ["HA1", "HAB"], "a2": ["HA2", "HAB"], "b1": ["HB1", "HAB"], "b2": ["HB2", "HAB"]}
a_tokens, b_tokens = ["HA1", "HA2", "HAB"], ["HB1", "HB2"]
errors = []

def read(path):
    got = {}                                   # channel -> token_seq in arrival order
    with open(path) as f:
        for line in f:
            if line.startswith('{"seq":'):
                m = json.loads(line)
                got.setdefault(m["channel"], []).append(m["data"]["data"]["token_seq"])
    return got

seqs = {c: read(f"{T}/client-{c}.out") for c in host}
# host B's link-down records that arrived after the link came back
before_up = {c: read(f"{T}/client-{c}.at-link-up") for c in ("b1", "b2")}
def dups(l): return len(l) - len(set(l))
def disorder(l): return sum(1 for i in range(1, len(l)) if l[i] <= l[i - 1])

for p, cat in enumerate(cats):
    count = {}
    with open(f"{T}/kafka-{cat}.counts") as f:
        for line in f:
            n, tok = line.split()
            count[tok] = int(n)
    for side, tl, want in (("a", a_tokens, sent[2 * p]), ("b", b_tokens, sent[2 * p + 1])):
        have = sum(count.get(t, 0) for t in tl)
        if have != want:
            errors.append(f"phase {names[p]}: Kafka holds {have} records of the {side} tokens, "
                          f"the publisher sent {want}")
    for c in host:
        tot = {"sent": 0, "received": 0, "gaps": 0, "duplicates": 0, "out_of_order": 0}
        notes = []
        for t in toks[c]:
            ch = f"{t}.{cat}"
            l, n = seqs[c].get(ch, []), count.get(t, 0)
            d, dis = dups(l), disorder(l)
            if host[c] == "A" or p in (0, 3):
                lo = 1                           # every record, in order, once
            elif p == 2:
                lo = min(l) if l else n + 1      # every record from B's first one after the rejoin
                notes.append(f"{t}:{lo}")
                if not l:
                    errors.append(f"phase {names[p]} client {c} {ch}: nothing after the rejoin")
            else:
                lo = None                        # link down: what got through, never twice
            if lo is not None:
                gaps = len(set(range(lo, n + 1)) - set(l))
                if gaps or d or dis or (l and max(l) > n):
                    errors.append(f"phase {names[p]} client {c} {ch}: {len(l)} received, want "
                                  f"{lo}..{n} once and in order: gaps {gaps} duplicates {d} "
                                  f"out of order {dis}")
            else:
                gaps = n - len(set(l))
                if d or (l and max(l) > n):
                    errors.append(f"phase {names[p]} client {c} {ch}: {d} duplicates")
            for k, v in (("sent", n), ("received", len(l)), ("gaps", gaps), ("duplicates", d),
                         ("out_of_order", dis)):
                tot[k] += v
        extra = ""
        if host[c] == "B" and p == 1:
            late = sum(len(seqs[c].get(f"{t}.{cat}", [])) - len(before_up[c].get(f"{t}.{cat}", []))
                       for t in toks[c])
            extra = f" (lost while cut off) late_after_link_up={late}"
        if notes:
            extra = " first_after_rejoin=" + ",".join(notes)
        print(f"figures: phase={names[p]} client={c} host={host[c]} "
              + " ".join(f"{k}={v}" for k, v in tot.items()) + extra)
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
PY

# every daemon stops cleanly (the shards deregister: Redis is reachable again)
stop_ok router "$ROUTER"
stop_ok shard-a "$SHARD_A"
stop_ok shard-b "$SHARD_B"
! grep -l 'AddressSanitizer\|runtime error' "$T"/*.log || fail "sanitizer report in the logs above"

echo "figures: routes_expired_ms=$(( t_expired - t_cut )) (link down -> lease gone and routes swept; lease 2 s + grace 2 s + discovery 0.2 s)"
echo "figures: rejoin_ms=$(( t_back - t_up )) (link up -> lease synced, routes back, router reconnected with the secret)"
echo "figures: router drops for host-b (shard_down)=${drops_b:-0}, for host-a=$drops_a; wrong-secret router refused (shard-side auth failures: A=$refused_a B=$refused_b)"
echo "netns hosts: ok"
