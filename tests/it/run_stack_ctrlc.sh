#!/usr/bin/env bash
# `make run` + Ctrl-C: the terminal sends SIGINT to the whole foreground
# process group.  The services run in their own sessions, so only the script
# (and the demo clients) get it; the script then stops them in stages: the
# router first (one SIGTERM: it drains and commits), then the shards
# (deregister), then the broker and Redis.  Simulated here by starting the
# stack in its own process group and sending SIGINT to that group.
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"
run_stack_env run-stack-ctrlc
env "${RUN_STACK_ENV[@]}" PUBLISH_RATE=100 setsid "$top/tools/run-stack.sh" >"$out" 2>&1 &
pid=$!
# wait for live messages at the demo client (an event, not a delay)
wait_log 30 "$out" '^{"seq":' || { echo "no live message"; tail -20 "$out"; kill -KILL -- -"$pid"; exit 1; }
kill -INT -- -"$pid"          # Ctrl-C: SIGINT to the script's process group
wait_until 30 stack_gone "$pid" || { echo "stack did not stop"; kill -KILL -- -"$pid"; exit 1; }
grep -v '^{"seq"' "$out" | tail -5
grep -q '^stopped;' "$out" || { echo "stack did not stop cleanly"; exit 1; }
! grep -q 'Killed' "$out" || { echo "a process had to be killed"; exit 1; }
rl="$run_dir/logs/router.log"
# the router got exactly one signal, SIGTERM from the script (not SIGINT)
n=$(grep -c '"msg":"signal received: draining"' "$rl" || true)
[ "$n" -eq 1 ] || { echo "router got $n signals"; exit 1; }
grep -q '"msg":"signal received: draining","signal":15' "$rl" || { echo "router got SIGINT"; exit 1; }
grep -q '"msg":"router stopped"' "$rl" || { echo "router did not stop cleanly"; exit 1; }
ts() { sed -n "s/^{\"ts\":\"\([^\"]*\)\".*\"msg\":\"$2\".*/\1/p" "$1" | head -1; }
r_stop=$(ts "$rl" "router stopped")
for i in 1 2 3; do
    sl="$run_dir/logs/shard-$i.log"
    s_sig=$(ts "$sl" "shutting down")
    [ -n "$s_sig" ] || { echo "shard-$i did not shut down"; exit 1; }
    # ISO-8601 timestamps of one clock compare as strings
    [[ "$r_stop" < "$s_sig" ]] || { echo "shard-$i stopped before the router ($s_sig < $r_stop)"; exit 1; }
    grep -q '"msg":"deregistered from redis"' "$sl" || { echo "shard-$i did not deregister"; exit 1; }
done
echo "run-stack ctrl-c: staged stop ok (router stopped $r_stop, then the shards)"
