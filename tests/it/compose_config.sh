#!/usr/bin/env bash
# The compose stack validates (no Docker engine here: `config` parses and
# checks the file, its anchors and service references, without running it),
# and what issue 14 asked of it holds: restart policies, pinned images, a
# visible topic-creation failure, only the WebSocket port public, haproxy
# with PROXY v2 and stats auth, Prometheus rules that promtool accepts, a
# Grafana dashboard that is valid JSON and only names documented metrics;
# and (issue 19) the shards' /health and /metrics on their admin port
# (ADMIN_ADDR), where haproxy checks and Prometheus scrapes them.  What the
# model means (names resolve on shared networks, limits, log rotation, fd
# limits, Redis auth, TLS) is tests/it/compose_check.sh; the alert rules'
# unit tests are tests/it/promtool_rules.sh.
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
C="$top/compose"
fail() { echo "compose: $*" >&2; exit 1; }

# secrets are required, not defaulted
export REDIS_PASSWORD=test-redis-pw
if HAPROXY_STATS_PASSWORD= GRAFANA_ADMIN_PASSWORD=x docker-compose -f "$C/docker-compose.yml" config >/dev/null 2>&1; then
    fail "config passes without HAPROXY_STATS_PASSWORD"
fi
export HAPROXY_STATS_PASSWORD=test-stats GRAFANA_ADMIN_PASSWORD=test-grafana
out=$(docker-compose -f "$C/docker-compose.yml" config)
for svc in redis redpanda topics router shard lb prometheus alertmanager grafana; do
    grep -q "^  $svc:" <<<"$out" || fail "service $svc missing"
done
# shards share the socket volume with the router and derive their socket there
grep -q 'SHARD_SOCKET_DIR: /run/odin' <<<"$out"
grep -q 'odin-sockets' <<<"$out"

# per-service checks on the resolved file (python3 + PyYAML)
python3 - "$out" "$ODIN_TMP/compose-admin-port" "$C/haproxy.cfg" <<'PY'
import re, sys, yaml
doc = yaml.safe_load(sys.argv[1])
svcs = doc["services"]
errs = []
for name, s in svcs.items():
    r = s.get("restart")
    if name == "topics":
        if not (r or "").startswith("on-failure"):
            errs.append(f"{name}: restart should be on-failure, is {r}")
    elif r not in ("unless-stopped", "always"):
        errs.append(f"{name}: no restart policy (restart: {r})")
    img = s.get("image", "")
    if not img.startswith("odin-dispatch:") and not re.search(r":v?\d+\.\d+\.\d+(-[a-z0-9.]+)?$", img):
        errs.append(f"{name}: image {img!r} is not pinned to a version")
    for p in s.get("ports", []):
        pub = p if isinstance(p, dict) else {"published": str(p)}
        text = str(p)
        host_ip = pub.get("host_ip", "")
        published = str(pub.get("published", ""))
        if isinstance(p, str):
            parts = p.split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
            published = parts[-2] if len(parts) >= 2 else parts[0]
        if published != "3002" and host_ip != "127.0.0.1":
            errs.append(f"{name}: port {text} is public (bind operator ports to 127.0.0.1)")
        if published == "3002" and name != "lb":
            errs.append(f"{name}: only the load balancer publishes 3002")
if svcs["router"].get("ports"):
    errs.append("router: /metrics and /health must not be published")
cmd = " ".join(svcs["topics"]["command"]) if isinstance(svcs["topics"]["command"], list) else svcs["topics"]["command"]
if "|| true" in cmd or "set -e" not in cmd:
    errs.append("topics: a failure must fail the service (no || true, set -e)")
env = svcs["shard"]["environment"]
if env.get("WS_PROXY_PROTOCOL") not in ("required", "optional"):
    errs.append("shard: WS_PROXY_PROTOCOL not on")
lbip = svcs["lb"]["networks"]["odin"]["ipv4_address"]
if env.get("WS_PROXY_TRUSTED") != lbip + "/32":
    errs.append(f"shard: WS_PROXY_TRUSTED {env.get('WS_PROXY_TRUSTED')} is not the LB's {lbip}/32")
# /health and /metrics on the shard's admin listener, not the public port
admin = env.get("ADMIN_ADDR", "")
if not admin or admin.rsplit(":", 1)[-1] == "3002":
    errs.append(f"shard: ADMIN_ADDR {admin!r} is not a port apart from WS_ADDR's 3002")
else:
    ap = admin.rsplit(":", 1)[-1]
    hc = " ".join(svcs["shard"].get("healthcheck", {}).get("test", []))
    if f":{ap}/livez" not in hc:
        errs.append(f"shard: healthcheck {hc!r} is not /livez on the admin port {ap}")
    if str(ap) not in [str(p) for p in svcs["shard"].get("expose", [])]:
        errs.append(f"shard: admin port {ap} not exposed on the compose network")
    for p in svcs["shard"].get("ports", []):
        if ap in str(p):
            errs.append(f"shard: admin port {ap} is published")
    open(sys.argv[2], "w").write(ap)
# liveness for the container, readiness for traffic (full or draining: out
# of the balancer's rotation, not restarted)
hc = " ".join(svcs["router"].get("healthcheck", {}).get("test", []))
if "/livez" not in hc:
    errs.append(f"router: healthcheck {hc!r} is not /livez")
cfg = open(sys.argv[3]).read()
if "option httpchk GET /readyz" not in cfg:
    errs.append("haproxy.cfg: the shards' check is not GET /readyz")
if errs:
    print("\n".join(errs)); sys.exit(1)
PY
ap=$(cat "$ODIN_TMP/compose-admin-port")
# haproxy checks and Prometheus scrapes go to the admin port
grep -Eq "server-template shard .* shard:3002 check port $ap( |$)" "$C/haproxy.cfg" \
    || fail "haproxy health checks do not use the shard admin port $ap"
python3 - "$C/prometheus/prometheus.yml" "$ap" <<'PY' || fail "prometheus does not scrape the shards' admin port"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
job = [j for j in doc["scrape_configs"] if j["job_name"] == "odin-shard"][0]
ports = [str(d.get("port")) for d in job.get("dns_sd_configs", [])]
ports += [t.rsplit(":", 1)[-1] for s in job.get("static_configs", []) for t in s["targets"]]
sys.exit(0 if ports and all(p == sys.argv[2] for p in ports) else 1)
PY

# haproxy: PROXY v2 to the shards, stats behind auth, slots not hardwired
grep -q 'send-proxy-v2' "$C/haproxy.cfg" || fail "haproxy does not send PROXY v2"
grep -q 'stats auth "${HAPROXY_STATS_USER}:${HAPROXY_STATS_PASSWORD}"' "$C/haproxy.cfg" || fail "stats without auth"
# Prometheus sends its alerts to the compose Alertmanager
python3 - "$C/prometheus/prometheus.yml" <<'PY' || fail "prometheus.yml does not send alerts to alertmanager:9093"
import sys, yaml
am = yaml.safe_load(open(sys.argv[1]))["alerting"]["alertmanagers"]
sys.exit(0 if any("alertmanager:9093" in t for a in am for s in a["static_configs"] for t in s["targets"]) else 1)
PY
grep -q 'server-template shard "${LB_SHARD_SLOTS}"' "$C/haproxy.cfg" || fail "server slots hardwired"
if command -v haproxy >/dev/null; then
    LB_SHARD_SLOTS=128 HAPROXY_STATS_USER=a HAPROXY_STATS_PASSWORD=b \
        haproxy -c -q -f "$C/haproxy.cfg" || fail "haproxy -c"
else
    echo "compose: haproxy not installed (tools/deps.sh); haproxy -c skipped"
fi

# Prometheus config and rules
command -v promtool >/dev/null || fail "promtool missing (apt-get install prometheus; tools/deps.sh)"
promtool check config "$C/prometheus/prometheus.yml" >/dev/null || fail "promtool check config"
promtool check rules "$C/prometheus/alerts.yml" >/dev/null || fail "promtool check rules"
for a in OdinShardDown OdinRouterLag OdinRouterDrops OdinRouterFallback OdinFdUse OdinDeliveryLatencyHigh; do
    grep -q "alert: $a\$" "$C/prometheus/alerts.yml" || fail "alert $a missing"
done

# Grafana: provisioning YAML, dashboard JSON with the panels asked for
dash="$C/grafana/dashboards/odin-dispatch.json"
jq -e '.uid and .title and (.panels | length > 0)' "$dash" >/dev/null || fail "dashboard JSON"
jq -e '[.panels[] | select(.type != "row") | .targets[].datasource.uid] | all(. == "prometheus")' "$dash" >/dev/null \
    || fail "dashboard panels not on the provisioned datasource"
grep -q 'uid: prometheus' "$C/grafana/provisioning/datasources/prometheus.yml" || fail "datasource uid"
python3 -c 'import sys, yaml; [yaml.safe_load(open(f)) for f in sys.argv[1:]]' \
    "$C/grafana/provisioning/datasources/prometheus.yml" "$C/grafana/provisioning/dashboards/odin.yml"
titles=$(jq -r '.panels[].title' "$dash")
for t in "Connections per shard" "Deliveries per second" "Router drops by reason and shard" \
         "Latency" "Delivery latency" "Kafka consumer lag" "Redis" "File descriptors"; do
    grep -q "^$t" <<<"$titles" || fail "dashboard has no '$t' panel"
done
# every metric the dashboard and the rules use is one the daemons document
used=$( (jq -r '.panels[].targets[]?.expr' "$dash"; grep -E '^\s+expr:' "$C/prometheus/alerts.yml") |
        grep -oE '\b(ws|shard|router|process|odin)_[a-z_]+' | sed -E 's/_(bucket|sum|count)$//' | sort -u)
for m in $used; do
    grep -q "\`$m\`" "$top/docs/operations.md" || fail "dashboard/rules use $m, which docs/operations.md does not list"
done

# every setting the compose file gives a daemon exists in its --help
help=$("$ODIN_BUILD/odin-shard" --help)
for env in $(sed -n '/^  shard:/,/^  [a-z]*:$/p' "$C/docker-compose.yml" | sed -n 's/^ *\([A-Z_][A-Z0-9_]*\): .*/\1/p'); do
    grep -q ", $env (" <<<"$help" || fail "compose sets $env, which odin-shard does not know"
done
help=$("$ODIN_BUILD/odin-router" --help)
for env in $(sed -n '/^  router:/,/^  shard:$/p' "$C/docker-compose.yml" | sed -n 's/^ *\([A-Z_][A-Z0-9_]*\): .*/\1/p'); do
    grep -q ", $env (" <<<"$help" || fail "compose sets $env, which odin-router does not know"
done
echo "compose: valid"
