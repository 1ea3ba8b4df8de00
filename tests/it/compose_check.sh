#!/usr/bin/env bash
# What the compose files mean, not only that they parse: for the main stack
# and with each override merged (`docker-compose -f base -f override config`
# is the merged model), tests/it/compose_check.py checks that every host a
# service names (REDIS_URL, KAFKA_BROKERS, REDIS_SENTINELS, replicaof,
# sentinel monitor, haproxy backends, Prometheus scrape and Alertmanager
# targets, Alertmanager receivers, Grafana datasource) is a service on a
# network it shares and declares that port; every image pinned (the
# Dockerfiles' FROM too); restart policy, healthcheck, memory/CPU limits and
# log rotation everywhere; Redis password on every server and client,
# auth-pass on Sentinels, masterauth on replicas; and fd limits that fit:
# haproxy is started on compose/haproxy.cfg to read how many fds its maxconn
# needs ("Cannot raise FD limit to N"), and the lb service's nofile must
# cover N.  Then haproxy runs for real (maxconn scaled to this machine's fd
# limit) without and with a generated certificate (docker-compose.tls.yml's
# LB_TLS_CERT): plain WebSocket port, TLS handshake on the public port with
# that certificate, the plain port kept, the container healthcheck command.
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
C="$top/compose"
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"
stack_init compose-check
STACK_FAIL_PREFIX="compose_check: " STACK_LOGS=""
command -v haproxy >/dev/null || fail "haproxy missing (tools/deps.sh)"
command -v openssl >/dev/null || fail "openssl missing"

export HAPROXY_STATS_PASSWORD=test-stats GRAFANA_ADMIN_PASSWORD=test-grafana
export REDIS_PASSWORD=test-redis-pw LB_TLS_CERT_FILE="$T/odin.pem"
export REDIS_TLS_HOST=redis.example.com

# a self-signed certificate for the TLS listener
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=odin-compose-test" \
    -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
cat "$T/cert.pem" "$T/key.pem" >"$T/odin.pem"

# haproxy.cfg with this machine's ports for its listeners; maxconn as given
lbcfg() { # out maxconn
    local p; sed_args=()
    for p in 3001 3002 8404 8405; do
        eval "P$p=$(port)"; local v="P$p"
        sed_args+=(-e "s/\\*:$p\\b/127.0.0.1:${!v}/")
    done
    sed "${sed_args[@]}" -e "s/^\\(\\s*maxconn\\) [0-9]*/\\1 $2/" "$C/haproxy.cfg" >"$1"
}
export LB_SHARD_SLOTS=128 HAPROXY_STATS_USER=admin
maxconn=$(awk '$1 == "maxconn" { print $2; exit }' "$C/haproxy.cfg")
[ -n "$maxconn" ] || fail "haproxy.cfg has no global maxconn"

# how many fds compose's maxconn needs, as haproxy computes it: started with
# this process' limit (below the need), it refuses and names the figure
need=0
for tls in "" "$T/odin.pem"; do
    lbcfg "$T/need.cfg" "$maxconn"
    rc=0; out=$(env ${tls:+LB_TLS_CERT=$tls} timeout 10 haproxy -db -f "$T/need.cfg" 2>&1) || rc=$?
    n=$(sed -n 's/.*Cannot raise FD limit to \([0-9]*\).*/\1/p' <<<"$out" | head -1)
    [ -n "$n" ] || fail "haproxy with maxconn $maxconn under nofile $(ulimit -n) did not name its fd need (rc $rc): $out"
    [ "$n" -gt "$need" ] && need=$n
done
echo "compose_check: haproxy maxconn $maxconn needs $need fds (measured)"

# the merged models
check() { # label files...
    local label=$1; shift
    local args=(); local f
    for f in "$@"; do args+=(-f "$C/$f"); done
    docker-compose "${args[@]}" config >"$T/$label.yml" || fail "$label: docker-compose config"
    python3 "$top/tests/it/compose_check.py" "$label" "$T/$label.yml" --lb-fds "$need"
}
rc=0
check base docker-compose.yml || rc=1
check sentinel docker-compose.yml docker-compose.sentinel.yml || rc=1
check tls docker-compose.yml docker-compose.tls.yml || rc=1
check redis-tls docker-compose.yml docker-compose.redis-tls.yml || rc=1
check all docker-compose.yml docker-compose.sentinel.yml docker-compose.tls.yml || rc=1
[ $rc = 0 ] || fail "the compose model has the problems above"

# the Redis password is required, not defaulted
if REDIS_PASSWORD= docker-compose -f "$C/docker-compose.yml" config >/dev/null 2>&1; then
    fail "config passes without REDIS_PASSWORD"
fi

# haproxy -c with and without a certificate (and a missing one is refused)
haproxy -c -q -f "$C/haproxy.cfg" || fail "haproxy -c without a certificate"
LB_TLS_CERT="$T/odin.pem" haproxy -c -q -f "$C/haproxy.cfg" || fail "haproxy -c with LB_TLS_CERT"
if LB_TLS_CERT="$T/missing.pem" haproxy -c -q -f "$C/haproxy.cfg" 2>/dev/null; then
    fail "haproxy -c accepts a missing certificate: the TLS bind is not read"
fi

# the TLS override gives haproxy the certificate it mounts, keeps the plain
# port on the host's loopback, and the public port stays the only public one
python3 - "$T/tls.yml" <<'PY' || fail "docker-compose.tls.yml"
import sys, yaml
lb = yaml.safe_load(open(sys.argv[1]))["services"]["lb"]
cert = lb["environment"]["LB_TLS_CERT"]
mounted = [v for v in lb["volumes"] if (v["target"] if isinstance(v, dict) else v.split(":")[1]) == cert]
assert mounted, f"LB_TLS_CERT {cert} is not a mounted file"
ports = [str(p) if not isinstance(p, dict) else f"{p.get('host_ip', '')}:{p['published']}:{p['target']}" for p in lb["ports"]]
assert any(p.split("/")[0].endswith(":3001") and p.startswith("127.0.0.1:") for p in ports), ports
PY

# haproxy for real, maxconn scaled to this machine's fd limit, with and
# without the certificate
small=$(( ($(ulimit -n) - 1000) / 2 ))
for tls in "" "$T/odin.pem"; do
    lbcfg "$T/run.cfg" "$small"
    spawn haproxy env ${tls:+LB_TLS_CERT=$tls} haproxy -db -f "$T/run.cfg"
    # the compose healthcheck, its port mapped
    hc=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["services"]["lb"]["healthcheck"]["test"][-1])' "$T/base.yml")
    hc=${hc//127.0.0.1\/8405/127.0.0.1\/$P8405}
    wait_until 10 bash -c "$hc" || { cat "$T/haproxy.log"; fail "lb healthcheck (${tls:+TLS}): $hc"; }
    if [ -z "$tls" ]; then
        # plain WebSocket port: TCP, no TLS (a handshake finds no server hello)
        if timeout 5 openssl s_client -connect "127.0.0.1:$P3002" </dev/null >"$T/s_client.out" 2>&1 \
           && grep -q 'BEGIN CERTIFICATE' "$T/s_client.out"; then
            fail "3002 speaks TLS without a certificate"
        fi
        echo "compose_check: haproxy without a certificate: plain 3002, healthcheck passes"
    else
        timeout 5 openssl s_client -connect "127.0.0.1:$P3002" -servername odin.test </dev/null \
            >"$T/s_client.out" 2>&1 || true
        grep -q 'subject=CN = odin-compose-test' "$T/s_client.out" \
            || { cat "$T/s_client.out"; fail "no TLS with the mounted certificate on 3002"; }
        grep -Eq '(Protocol *: |New, )TLSv1\.[23]' "$T/s_client.out" || fail "TLS below 1.2: $(grep -E 'Protocol|New,' "$T/s_client.out")"
        timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$P3001" || fail "plain port 3001 not kept with TLS on"
        echo "compose_check: haproxy with the certificate: TLS (>= 1.2) on 3002 with it, plain 3001 kept, healthcheck passes"
    fi
    stack_stop "$SPAWNED"
done

# Alertmanager: the route's receivers exist, and amtool accepts the file
python3 - "$C/alertmanager/alertmanager.yml" <<'PY' || fail "alertmanager.yml"
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
names = {r["name"] for r in d["receivers"]}
def walk(r):
    assert r.get("receiver", "odin-webhook") in names, r
    for c in r.get("routes") or []:
        walk(c)
walk(d["route"])
assert any(r.get("webhook_configs") for r in d["receivers"]), "no webhook receiver"
PY
if command -v amtool >/dev/null; then
    amtool check-config "$C/alertmanager/alertmanager.yml" >/dev/null || fail "amtool check-config"
else
    echo "compose_check: amtool not installed (Debian prometheus-alertmanager); its check skipped"
fi
echo "compose_check: valid"
