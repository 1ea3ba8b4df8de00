#!/usr/bin/env bash
# The Sentinel override validates on top of the main stack, and sets only
# settings router and shard know, and runs its redis, replica and Sentinel
# commands (below).  That its services can reach each other
# (one network with redis, router and shards) and authenticate is checked
# on the merged model by tests/it/compose_check.sh.
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
export HAPROXY_STATS_PASSWORD=test-stats GRAFANA_ADMIN_PASSWORD=test-grafana REDIS_PASSWORD=test-redis-pw
out=$(docker-compose -f "$top/compose/docker-compose.yml" -f "$top/compose/docker-compose.sentinel.yml" config)
for svc in redis redis-replica sentinel-1 sentinel-2 sentinel-3 router shard; do
    grep -q "^  $svc:" <<<"$out" || { echo "service $svc missing"; exit 1; }
done
grep -q 'REDIS_SENTINELS: sentinel-1:26379,sentinel-2:26379,sentinel-3:26379' <<<"$out"
grep -q 'sentinel monitor odin redis 6379 2' <<<"$out"
grep -q 'sentinel auth-pass odin %s' <<<"$out"
for bin in odin-router odin-shard; do
    help=$("$ODIN_BUILD/$bin" --help)
    for env in REDIS_SENTINELS REDIS_MASTER_NAME; do
        grep -q ", $env (" <<<"$help" || { echo "$bin does not know $env"; exit 1; }
    done
done
echo "compose + sentinel: valid"

# Run what the override runs, on this machine: the redis and redis-replica
# commands and a Sentinel's shell command from the merged model, with only
# the endpoints mapped (the host `redis` -> 127.0.0.1 and a free port,
# ports and paths to this test's).  With REDIS_PASSWORD set, the replica
# must sync (masterauth) and the Sentinel must see the master up and learn
# the replica from it (auth-pass): a Sentinel or replica without the
# password never gets there.
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"
stack_init compose-sentinel
STACK_FAIL_PREFIX="compose_sentinel: " STACK_LOG_LINES=10
pm=$(port); pr=$(port); ps=$(port)
mkdir -p "$T/m" "$T/r"
printf '%s\n' "$out" >"$T/model.yml"
python3 - "$T" "$pm" "$pr" "$ps" <<'PY'
import json, sys, yaml
t, pm, pr, ps = sys.argv[1:]
s = yaml.safe_load(open(t + "/model.yml"))["services"]
un = lambda v: v.replace("$$", "$")     # config output escapes $ as $$
m = [un(a) for a in s["redis"]["command"]] + ["--port", pm, "--bind", "127.0.0.1", "--dir", t + "/m"]
r = [un(a) for a in s["redis-replica"]["command"]]
i = r.index("--replicaof"); r[i + 1:i + 3] = ["127.0.0.1", pm]
r += ["--port", pr, "--bind", "127.0.0.1", "--dir", t + "/r"]
sen = un(s["sentinel-1"]["command"][0])
assert "sentinel monitor odin redis 6379 2" in sen and "/tmp/s.conf" in sen and "port 26379" in sen
sen = (sen.replace("sentinel monitor odin redis 6379", "sentinel monitor odin 127.0.0.1 " + pm)
          .replace("port 26379", "port " + ps + "\\nbind 127.0.0.1")
          .replace("/tmp/s.conf", t + "/s.conf"))
json.dump({"master": m, "replica": r, "sentinel": sen,
           "entry": s["sentinel-1"]["entrypoint"]}, open(t + "/cmds.json", "w"))
PY
readarray -t mcmd < <(jq -r '.master[]' "$T/cmds.json")
readarray -t rcmd < <(jq -r '.replica[]' "$T/cmds.json")
spawn master "${mcmd[@]}"
spawn replica "${rcmd[@]}"
readarray -t entry < <(jq -r '.entry[]' "$T/cmds.json")
spawn sentinel "${entry[@]}" "$(jq -r .sentinel "$T/cmds.json")"
rcli() { REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -p "$1" "${@:2}"; }
wait_until 10 rcli "$pm" ping || fail "redis (the compose command) did not start"
[ "$(redis-cli -p "$pm" ping 2>&1)" != PONG ] || fail "redis answers without the password"
wait_until 20 bash -c "REDISCLI_AUTH=\$REDIS_PASSWORD redis-cli -p $pr INFO replication | grep -q 'master_link_status:up'" \
    || fail "the replica did not sync with masterauth"
wait_until 20 bash -c "redis-cli -p $ps SENTINEL replicas odin | grep -qx '$pr'" \
    || fail "the Sentinel did not learn the replica from the master (auth-pass)"
flags=$(redis-cli -p "$ps" SENTINEL master odin | sed -n '/^flags$/{n;p}')
[ "$flags" = master ] || fail "the Sentinel sees the master as '$flags'"
echo "compose + sentinel: redis, replica and Sentinel run with the compose commands: replica synced, Sentinel watches the master and found the replica"
