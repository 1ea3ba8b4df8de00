#!/usr/bin/env bash
# odin-test: alone (asserts every client is answered within 5 s of the kill:
# tools/run-tests.sh runs it with no other test beside it)
# Resume for a crowd (issue 18) at a size CI can carry: bench/resume.sh
# against the runner's redis-server and odin-devbroker with 600 clients on
# one of 3 shards (60 tokens, 200 records/s), the shard SIGKILLed, every
# client reconnecting to the two others after a random 0-2 s back-off
# (odin-resumestorm), then the abuse run (64 connections from 127.0.0.2
# sending reconnects at 10/s each, the message rate limit, after a burst of
# 10, while 100 honest clients from 127.0.0.3 reconnect once each).
#
# Asserts, exactly (odin-resumestorm reads the partitions back from Kafka):
#  storm: 600/600 reconnect_ack, 0 records missing, 0 duplicates, 0 records
#    a client should not have had, every client answered within 5 s of the
#    kill; each surviving shard's ESTABLISHED connections to the broker
#    ports stayed <= brokers + 1 (sampled every 20 ms during the storm);
#    each shard's ws_replay_kafka_bytes_total <= 2 x the key+value bytes of
#    the records in the partitions' missed windows (from the lowest position
#    asked of that shard to the end when the last client was answered);
#    no text frame with invalid UTF-8; the connections were sampled with
#    sock_diag (kafka_conns_proc_samples=0).
#  abuse: 100/100 honest reconnect_ack; the abusers' reconnect_errors are
#    RESUME_RATE_LIMITED or RESUME_BUSY only, at least one
#    RESUME_RATE_LIMITED (each sends 10/s where RESUME_CONN_RATE is 1/s
#    burst 3, and 640/s from one address where RESUME_IP_RATE is 100/s),
#    and no abuser connection was closed.
# The figures (RSS growth of the shard under abuse included) are printed.
set -euo pipefail
: "${ODIN_BUILD:?}" "${ODIN_TMP:?}" "${ODIN_TOP:?}" "${ODIN_REDIS_URL:?}" "${ODIN_KAFKA_BROKERS:?}"
run="$ODIN_TMP/resume_storm.$$"
rc=0
env BUILD="$ODIN_BUILD" RUN_DIR="$run" USE_REDIS_URL="$ODIN_REDIS_URL" \
    USE_KAFKA_BROKERS="$ODIN_KAFKA_BROKERS" PREFIX="RS$$x" \
    CLIENTS=600 TOKENS=60 RATE=200 JITTER_MS=2000 WARM_MS=1000 \
    HONEST=100 ABUSE_CONNS=64 ABUSE_BURST=10 ABUSE_RATE=10 \
    bash "$ODIN_TOP/bench/resume.sh" || rc=$?
[ -s "$run/storm.kv" ] || { echo "FAIL: no storm figures (bench/resume.sh exit $rc)"; exit 1; }
[ -s "$run/abuse.kv" ] || { echo "FAIL: no abuse figures (bench/resume.sh exit $rc)"; exit 1; }

fails=0
kv() { sed -n "s/^$2=//p" "$1" | tail -n 1; }
check() { # WHAT CONDITION...
    local what=$1; shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}
eq() { [ "${1:-x}" = "$2" ]; }
le() { [[ "${1:-x}" =~ ^[0-9]+$ ]] && [ "$1" -le "$2" ]; }
ge() { [[ "${1:-x}" =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ]; }

st="$run/storm.kv"; ab="$run/abuse.kv"
echo "== storm figures"; cat "$st"
echo "== abuse figures"; cat "$ab"
sed -n 's/^/    /p' "$run/table.txt" 2>/dev/null || true

check "storm: 600/600 reconnect_ack" eq "$(kv "$st" acks)" 600
check "storm: 0 reconnect_error" eq "$(kv "$st" errors)" 0
check "storm: 0 records missing" eq "$(kv "$st" missing)" 0
check "storm: 0 duplicates" eq "$(kv "$st" duplicates)" 0
check "storm: 0 unexpected records" eq "$(kv "$st" unexpected)" 0
check "storm: records were expected at all" ge "$(kv "$st" expected_records)" 1
check "storm: no invalid UTF-8 text frame" eq "$(kv "$st" bad_utf8_frames)" 0
check "storm: every client answered within 5 s of the kill" le "$(kv "$st" kill_to_last_answer_ms)" 5000
brokers=$(kv "$st" brokers)
for pid in $(sed -n 's/^kafka_conns_max\.\([0-9]*\)=.*/\1/p' "$st"); do
    check "storm: shard pid $pid Kafka connections <= brokers + 1 ($brokers + 1)" \
        le "$(kv "$st" "kafka_conns_max.$pid")" $((brokers + 1))
done
# the Kafka connections are sampled with sock_diag, not by reading
# /proc/PID/net/tcp (which formats every socket of the machine: at full
# size two thirds of the tool's CPU, starving the shards it measures)
check "storm: Kafka connections sampled ($(kv "$st" kafka_conns_samples) samples)" \
    ge "$(kv "$st" kafka_conns_samples)" 1
check "storm: no sample read /proc/PID/net/tcp" eq "$(kv "$st" kafka_conns_proc_samples)" 0
for port in $(sed -n 's/^window_bytes\.\([0-9]*\)=.*/\1/p' "$st"); do
    w=$(kv "$st" "window_bytes.$port")
    check "storm: shard :$port missed windows measured" ge "$w" 1
    # read by the bench while the shard ran (shard_metrics.kv)
    kb=$(kv "$run/shard_metrics.kv" "replay_kafka_bytes.$port")
    check "storm: shard :$port ws_replay_kafka_bytes_total ($kb) <= 2 x $w" le "${kb:-absent}" $((2 * w))
done

check "abuse: 100/100 honest reconnect_ack" eq "$(kv "$ab" acks)" 100
check "abuse: honest 0 records missing" eq "$(kv "$ab" missing)" 0
check "abuse: honest 0 duplicates" eq "$(kv "$ab" duplicates)" 0
check "abuse: no abuser closed" eq "$(kv "$ab" abuse_closed)" 0
check "abuse: abusers sent reconnects" ge "$(kv "$ab" abuse_sent)" 640
check "abuse: at least one RESUME_RATE_LIMITED" ge "$(kv "$ab" abuse_errors.RESUME_RATE_LIMITED)" 1
other=$(grep '^abuse_errors\.' "$ab" | grep -v -e '^abuse_errors\.RESUME_RATE_LIMITED=' \
    -e '^abuse_errors\.RESUME_BUSY=' || true)
check "abuse: abusers' errors are RESUME_RATE_LIMITED / RESUME_BUSY only (${other:-none other})" \
    test -z "$other"
echo "abuse: shard RSS $(kv "$ab" "$(sed -n 's/^\(rss_kb_start\.[0-9]*\)=.*/\1/p' "$ab")") -> $(kv "$ab" "$(sed -n 's/^\(rss_kb_max\.[0-9]*\)=.*/\1/p' "$ab")") KiB"
[ "$fails" -eq 0 ] || { echo "resume_storm: $fails checks failed (logs: $run)"; exit 1; }
echo "resume_storm: all checks passed"
