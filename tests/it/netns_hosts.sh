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
# shellcheck source=../support/stack.sh
. "${ODIN_TOP:?}/tests/support/stack.sh"
stack_init netns
STACK_LOGS=""
command -v ip >/dev/null || fail "ip (iproute2) is not installed: tools/deps.sh installs it"

NS_R=odin-r-$$ NS_A=odin-a-$$ NS_B=odin-b-$$
SECRET="netns-secret-$$-$RANDOM"
PREFIX=odin:
made_ns=()
# after the processes (stack_cleanup): the namespaces
STACK_HOOKS+=('for ns in "${made_ns[@]}"; do ip netns del "$ns" 2>/dev/null; done')

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
rcli() { ip netns exec "$NS_R" redis-cli -p 6379 "$@"; }
# the router host's metrics (IN_NS=NS metric*: in another namespace)
rmetric_is() { IN_NS=$NS_R metric_is 8080 "$@"; }

# ---- the router host: Redis, Kafka (devbroker), router ---------------------
IN_NS=$NS_R spawn redis redis-server --port 6379 --bind 0.0.0.0 --protected-mode no \
    --dir "$T" --save '' --appendonly no --daemonize no --loglevel warning
wait_for 10 "redis-server in the router host" rcli ping
# the devbroker listens on 127.0.0.1 only: Kafka lives on the router host
IN_NS=$NS_R spawn_out devbroker "$B/odin-devbroker" --bootstrap-file "$T/kafka.bootstrap"
wait_for 20 "odin-devbroker" test -s "$T/kafka.bootstrap"
BROKERS=$(cat "$T/kafka.bootstrap")

# host_router NAME HTTP_PORT GROUP SECRET: a router in the router host
host_router() {
    IN_NS=$NS_R start_router "$1" "$2" KAFKA_BROKERS="$BROKERS" KAFKA_GROUP="$3" KAFKA_OFFSET_RESET=earliest \
        REDIS_URL=redis://127.0.0.1:6379 SHARD_INGRESS_SECRET="$4" ROUTER_ID="$1" \
        DISCOVERY_INTERVAL_MS=200 SHARD_DOWN_GRACE_MS=2000 SHARD_RECONNECT_MAX_MS=1000 LOG_LEVEL=info
}
host_router router 8080 netns "$SECRET"
ROUTER=$SPAWNED

# ---- shard hosts -----------------------------------------------------------
# host_shard NAME NS ADDR: shard host-NAME in namespace NS, log $T/shard-NAME.log
host_shard() {
    IN_NS=$2 start_shard "shard-$1" "host-$1" 0.0.0.0:3002 \
        SHARD_TCP_ADDR="$3:7001" SHARD_ENDPOINT="tcp://$3:7001" \
        SHARD_INGRESS_SECRET="$SECRET" REDIS_URL="redis://${3%.2}.1:6379" \
        SHARD_LEASE_TTL=2 REDIS_TIMEOUT=1 LOG_LEVEL=info
}
host_shard a "$NS_A" 10.213.1.2
SHARD_A=$SPAWNED
host_shard b "$NS_B" 10.213.2.2
SHARD_B=$SPAWNED
IN_NS=$NS_A wait_for 30 "shard host A listening" http_up 3002
IN_NS=$NS_B wait_for 30 "shard host B listening" http_up 3002

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
    IN_NS=${C_NS[$c]} ws_watch "client-$c" ws://127.0.0.1:3002/ws "$(IFS=,; echo "${chans[*]}")" --log-level warn
done
for c in "${CLIENTS[@]}"; do
    wait_for 30 "client $c subscribed" ws_acked "client-$c"
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
    synced host-b && routes_have host-b HB1 HB2 HAB && rmetric_is router_shards_connected 2
}
wait_for 30 "host A's routes" routes_have host-a HA1 HA2 HAB
wait_for 30 "host B's routes" routes_have host-b HB1 HB2 HAB
wait_for 30 "host A synced" synced host-a
wait_for 30 "host B synced" synced host-b
wait_for 30 "router connected to both shard hosts over TCP" rmetric_is router_shards_connected 2
for s in a b; do
    ep=$(rcli HGET "${PREFIX}shard:host-$s" endpoint)
    [[ "$ep" == tcp://10.213.* ]] || fail "host-$s registered endpoint '$ep', want tcp://10.213..."
    grep -q '"router authenticated"' "$T/shard-$s.log" || fail "host-$s: no authenticated router"
done

# publish NAME TOKENS TOPIC COUNT RATE: in the router host, in the background
# (COUNT 0: until SIGTERM); the JSON summary goes to $T/pub-NAME.out
declare -A PUB_PID
publish() {
    IN_NS=$NS_R spawn_out "pub-$1" env KAFKA_BROKERS="$BROKERS" PUBLISH_TOKENS="$2" PUBLISH_TOPICS="$3" \
        PUBLISH_COUNT="$4" PUBLISH_RATE="$5" PUBLISH_LINGER_MS=1 LOG_LEVEL=warn "$B/odin-publish"
    PUB_PID[$1]=$SPAWNED
}
# publish_end NAME [SIGNAL]: wait for the publisher (signalled first if
# given), check that Kafka acknowledged every record, SENT[NAME] = its count
declare -A SENT
publish_end() {
    [ -z "${2:-}" ] || kill "-$2" "${PUB_PID[$1]}"
    local rc=0; wait "${PUB_PID[$1]}" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$T/pub-$1.log" >&2; fail "publisher $1 exited $rc"; }
    jq -e '.errors == 0 and .undelivered == 0' "$T/pub-$1.out" >/dev/null ||
        fail "publisher $1: $(cat "$T/pub-$1.out")"
    SENT[$1]=$(jq -r .sent "$T/pub-$1.out")
}
# chan CLIENT TOKEN CAT: live records the client has on TOKEN.CAT
chan() { ws_count "client-$1" "\"channel\":\"$2\.$3\""; }
# received_at_least CAT N CLIENT...: each client has N live records of CAT
received_at_least() {
    local cat=$1 n=$2; shift 2
    for c in "$@"; do [ "$(ws_count "client-$c" "\"channel\":\"[A-Z0-9]*\.$cat\"")" -ge "$n" ] || return 1; done
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
wait_for 60 "phase 1 delivered" all_received trade "${SENT[a1]}" "${SENT[b1]}"

# ---- phase 2: host B's link down -----------------------------------------------
publish a2 "$A_TOKENS" odin.liquidity 0 150
publish b2 "$B_TOKENS" odin.liquidity 0 100
wait_for 30 "phase 2 records flowing" received_at_least liquidity 10 a1 a2 b1 b2
ip -n "$NS_R" link set to-b down
t_cut=$(now_ms)
wait_for 60 "host B's lease and routes to expire" b_expired
t_expired=$(now_ms)
wait_for 30 "router to see host B gone" rmetric_is router_shards_connected 1
n1=$(ws_count client-a1 '\.liquidity"'); n2=$(ws_count client-a2 '\.liquidity"')
wait_for 30 "host A still receiving after B expired" \
    received_at_least liquidity $(( (n1 > n2 ? n1 : n2) + 30 )) a1 a2
publish_end a2 TERM; publish_end b2 TERM
grep -q '"shard lease expired; cleaning its routes","shard":"host-b"' "$T/router.log" ||
    fail "router log: no cleaning of host-b"
IN_NS=$NS_R metric_ge 8080 router_shards_cleaned_total 1 || fail "router_shards_cleaned_total"
IN_NS=$NS_R metric_ge 8080 router_shard_grace_total 1 || fail "router_shard_grace_total"
drops_b=$(IN_NS=$NS_R metric 8080 'router_drops_total{reason="shard_down",shard="host-b"}')
drops_a=$(IN_NS=$NS_R metrics 8080 |
          awk '/^router_drops_total\{.*shard="host-a"/ { s += $2 } END { print s + 0 }')
[ "$drops_a" = 0 ] || fail "router dropped $drops_a records for host A"
wait_for 60 "phase 2 delivered to host A" all_received liquidity "${SENT[a2]}"

# ---- phase 3: host B's link back, under traffic --------------------------------
publish a3 "$A_TOKENS" odin.metadata 0 150
publish b3 "$B_TOKENS" odin.metadata 0 100
wait_for 30 "phase 3 records flowing on host A" received_at_least metadata 10 a1 a2
for c in b1 b2; do cp "$T/client-$c.out" "$T/client-$c.at-link-up"; done
ip -n "$NS_R" link set to-b up
t_up=$(now_ms)
wait_for 60 "host B to re-register and the router to reconnect" b_back
t_back=$(now_ms)
n1=$(ws_count client-b1 '\.metadata"'); n2=$(ws_count client-b2 '\.metadata"')
wait_for 30 "host B receiving again" received_at_least metadata $(( (n1 > n2 ? n1 : n2) + 30 )) b1 b2
publish_end a3 TERM; publish_end b3 TERM
[ "$(grep -c '"router authenticated"' "$T/shard-b.log")" -ge 2 ] ||
    fail "host-b: the router did not authenticate again after the link came back"
wait_for 60 "phase 3 delivered to host A" all_received metadata "${SENT[a3]}"

# ---- phase 4: both hosts up again -----------------------------------------------
publish a4 "$A_TOKENS" odin.analytics 300 400
publish b4 "$B_TOKENS" odin.analytics 200 400
publish_end a4; publish_end b4
wait_for 60 "phase 4 delivered" all_received analytics "${SENT[a4]}" "${SENT[b4]}"

# ---- a router with the wrong secret is refused --------------------------------
host_router intruder 8081 netns-intruder "wrong-$SECRET"
INTRUDER=$SPAWNED
refused() { grep "SHARD_INGRESS_SECRET differs" "$T/intruder.log" | grep -q "\"shard\":\"host-$1\""; }
wait_for 30 "the wrong-secret router refused by host A" refused a
wait_for 30 "the wrong-secret router refused by host B" refused b
IN_NS=$NS_R metric_is 8081 router_shards_connected 0 || fail "the wrong-secret router is connected"
refused_a=$(IN_NS=$NS_A metric 3002 shard_ingress_auth_failures_total)
refused_b=$(IN_NS=$NS_B metric 3002 shard_ingress_auth_failures_total)
# stop_ok (stack.sh): SIGTERM, and the process must exit 0 within 10 s (ASan
# builds report leaks and errors through the exit status)
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
