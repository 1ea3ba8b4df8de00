#!/usr/bin/env bash
# Each daemon service of the compose file (and of the Sentinel override)
# runs on the host with exactly the compose environment: only the network
# endpoints are mapped to this test's own (Redis, broker, free ports, a
# socket directory), so a setting the binaries refuse, misspell-warn or
# fail fast on breaks the test, not a deployment.  Each process must come
# up (/health answers), log no "is not a setting" warning, and exit 0 on
# SIGTERM.
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
B=${ODIN_BUILD:?}
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"
stack_init compose-run
export HAPROXY_STATS_PASSWORD=x GRAFANA_ADMIN_PASSWORD=y REDIS_PASSWORD=z

# run_service FILES... : every router/shard service of the resolved config
run_file() {
    local label=$1; shift
    local resolved="$T/$label.yml"
    docker-compose "$@" config >"$resolved"
    for svc in router shard; do
        local env_file="$T/$label-$svc.env" hp
        hp=$(port)
        # the service's environment, endpoints mapped to this machine
        python3 - "$resolved" "$svc" "$hp" "$T" "$env_file" <<'PY'
import sys, yaml, os
doc = yaml.safe_load(open(sys.argv[1])); svc, hp, tmp, out = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
s = doc["services"][svc]
cmd = s.get("command") or []
assert cmd and cmd[0] in ("odin-router", "odin-shard"), f"{svc}: command {cmd}"
env = {k: str(v) for k, v in (s.get("environment") or {}).items()}
env["REDIS_URL"] = os.environ["ODIN_REDIS_URL"]
env.pop("REDIS_PASSWORD", None)           # the test Redis has no password
env.pop("REDIS_SENTINELS", None)          # the test Redis has no Sentinel
if "KAFKA_BROKERS" in env:
    env["KAFKA_BROKERS"] = os.environ["ODIN_KAFKA_BROKERS"]
for k in ("HTTP_ADDR", "WS_ADDR"):
    if k in env:
        env[k] = "127.0.0.1:" + hp
if "ADMIN_ADDR" in env:
    # /health is on the admin listener (WS_ADDR answers it 404): hp is that
    import socket
    so = socket.socket(); so.bind(("127.0.0.1", 0))
    env["WS_ADDR"] = "127.0.0.1:%d" % so.getsockname()[1]; so.close()
    env["ADMIN_ADDR"] = "127.0.0.1:" + hp
if "SHARD_SOCKET_DIR" in env:
    env["SHARD_SOCKET_DIR"] = tmp
if svc == "shard":
    env.setdefault("SHARD_ID", "compose-run-shard")
with open(out, "w") as f:
    f.write(cmd[0] + "\n")
    for k, v in sorted(env.items()):
        f.write(f"{k}={v}\n")
PY
        local bin; bin=$(head -1 "$env_file")
        local log="$T/$label-$svc.log"
        spawn "$label-$svc" env -i PATH="$PATH" $(tail -n +2 "$env_file" | tr '\n' ' ') "$B/$bin"
        local pid=$SPAWNED
        # up: /health answers 200 or 503 (the process is starting; it may end first)
        wait_while_alive 20 "$pid" health_code "$hp" '^(200|503)$' \
            || { echo "$label $svc did not come up:"; tail -n 20 "$log"; exit 1; }
        if grep -qi 'is not a setting\|did you mean' "$log"; then
            echo "$label $svc: the compose environment has a setting the binary does not know:"
            grep -i 'is not a setting\|did you mean' "$log"; exit 1
        fi
        kill -TERM "$pid"
        local rc=0; wait "$pid" || rc=$?; stack_forget "$pid"
        [ "$rc" = 0 ] || { echo "$label $svc exited $rc on SIGTERM:"; tail -n 20 "$log"; exit 1; }
        echo "$label $svc: $bin came up with the compose environment and stopped cleanly"
    done
}
run_file main -f "$top/compose/docker-compose.yml"
run_file sentinel -f "$top/compose/docker-compose.yml" -f "$top/compose/docker-compose.sentinel.yml"
