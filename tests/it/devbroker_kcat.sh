#!/usr/bin/env bash
# odin-devbroker with the stock kcat client:
#  1. kcat -P to odin.trades at $ODIN_KAFKA_BROKERS, kcat -C -e reads the
#     same values back (exact, in order: one key -> one partition).
#  2. `odin-devbroker --help` exits 0 and names every setting and the
#     retention/production caveat.
#  3. A private instance honours DEVBROKER_TOPICS / DEVBROKER_PARTITIONS /
#     DEVBROKER_BROKERS, prints the same address it writes to
#     --bootstrap-file, and exits 0 on SIGTERM.
set -euo pipefail
: "${ODIN_KAFKA_BROKERS:?run through tools/run-tests.sh it}"
: "${ODIN_BUILD:?}" "${ODIN_TMP:?}"
bin="$ODIN_BUILD/odin-devbroker"
# shellcheck source=../support/stack.sh
. "${ODIN_TOP:?}/tests/support/stack.sh"
pid=""
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true; }
trap cleanup EXIT

# --- 1. produce / consume round trip --------------------------------------
run="kcat-$$-$RANDOM"
key="KCAT$$"
expected="$ODIN_TMP/$run.expected"
for i in $(seq 1 20); do
    printf '%s:{"type":"TRADE_EXECUTED","run":"%s","i":%d,"text":"a b\\tc"}\n' \
        "$key" "$run" "$i"
done >"$ODIN_TMP/$run.in"
cut -d: -f2- "$ODIN_TMP/$run.in" >"$expected"

timeout 60 kcat -b "$ODIN_KAFKA_BROKERS" -P -t odin.trades -K: -l "$ODIN_TMP/$run.in" \
    || fail "kcat -P failed"
timeout 60 kcat -b "$ODIN_KAFKA_BROKERS" -C -t odin.trades -e -q -f '%k\t%s\n' \
    >"$ODIN_TMP/$run.all" || fail "kcat -C -e failed"
grep -F "\"run\":\"$run\"" "$ODIN_TMP/$run.all" | cut -f2- >"$ODIN_TMP/$run.got" || true
# keys came back too
n_keys=$(grep -F "\"run\":\"$run\"" "$ODIN_TMP/$run.all" | cut -f1 | sort -u)
[ "$n_keys" = "$key" ] || fail "keys: got '$n_keys', want '$key'"
diff -u "$expected" "$ODIN_TMP/$run.got" || fail "consumed values differ from produced"
echo "ok: kcat round trip of $(wc -l <"$expected") records"

# --- 2. --help -------------------------------------------------------------
help=$("$bin" --help) || fail "--help exited $?"
for s in DEVBROKER_BROKERS DEVBROKER_PARTITIONS DEVBROKER_TOPICS \
         DEVBROKER_BOOTSTRAP_FILE LOG_LEVEL --devbroker-brokers \
         --devbroker-partitions --devbroker-topics --devbroker-bootstrap-file \
         --bootstrap-file --log-level "few MB per partition" Redpanda Kafka; do
    grep -qF -- "$s" <<<"$help" || fail "--help does not mention $s"
done
echo "ok: --help"

# bad values are refused with exit 2
set +e
DEVBROKER_PARTITIONS=0 "$bin" >/dev/null 2>"$ODIN_TMP/$run.bad"; rc=$?
set -e
[ "$rc" = 2 ] || fail "DEVBROKER_PARTITIONS=0: exit $rc, want 2"
grep -q DEVBROKER_PARTITIONS "$ODIN_TMP/$run.bad" || fail "error does not name the setting"

# --- 3. a private instance with custom settings ----------------------------
bfile="$ODIN_TMP/$run.bootstrap"
DEVBROKER_TOPICS="t.$run.a, t.$run.b" DEVBROKER_PARTITIONS=3 DEVBROKER_BROKERS=2 \
    "$bin" --bootstrap-file "$bfile" >"$ODIN_TMP/$run.out" 2>"$ODIN_TMP/$run.log" &
pid=$!
wait_while_alive 10 "$pid" test -s "$bfile" || true
[ -s "$bfile" ] || { cat "$ODIN_TMP/$run.log" >&2; fail "bootstrap file not written"; }
addr=$(cat "$bfile")
[[ "$addr" =~ ^127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+$ ]] || fail "bootstrap '$addr' is not two host:port"
[ "$(head -n1 "$ODIN_TMP/$run.out")" = "$addr" ] || fail "stdout line differs from the file"
[ "$(wc -l <"$ODIN_TMP/$run.out")" = 1 ] || fail "stdout has more than one line"
meta=$(timeout 30 kcat -b "$addr" -L)
grep -qF "topic \"t.$run.a\" with 3 partitions" <<<"$meta" || fail "topic a: $meta"
grep -qF "topic \"t.$run.b\" with 3 partitions" <<<"$meta" || fail "topic b: $meta"
grep -qF " 2 brokers:" <<<"$meta" || fail "brokers: $meta"
echo hello | timeout 30 kcat -b "$addr" -P -t "t.$run.a" -p 2
[ "$(timeout 30 kcat -b "$addr" -C -t "t.$run.a" -p 2 -e -q)" = hello ] || fail "private instance round trip"
grep -q '"msg":"devbroker ready"' "$ODIN_TMP/$run.log" || fail "no JSON ready line"
kill -TERM "$pid"
set +e
wait "$pid"; rc=$?
set -e
pid=""
[ "$rc" = 0 ] || fail "exit status after SIGTERM: $rc"
[ ! -e "$bfile" ] || fail "bootstrap file left behind after a clean exit"
echo "ok: private instance, SIGTERM -> exit 0"
