#!/usr/bin/env bash
# The alert rules are unit-tested and every PromQL expression parses:
#   1. `promtool test rules compose/prometheus/alerts_test.yml` passes;
#   2. every alert of alerts.yml has a test case where it fires and one
#      where it is expected quiet (exp_alerts: []);
#   3. the tests can fail: each alert in turn is replaced by one that never
#      fires, and by one that always fires, and promtool must then fail;
#   4. every expression of the Grafana dashboard parses (`promtool check
#      rules` on a generated rules file, $shard replaced by a regex).
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
P="$top/compose/prometheus"
T=$(mktemp -d "${ODIN_TMP:?}/promtool.XXXXXX")
fail() { echo "promtool_rules: $*" >&2; exit 1; }
command -v promtool >/dev/null || fail "promtool missing (apt-get install prometheus; tools/deps.sh)"

(cd "$P" && promtool test rules alerts_test.yml) || fail "promtool test rules alerts_test.yml"

python3 - "$P/alerts.yml" "$P/alerts_test.yml" "$T" <<'PY' || fail "coverage"
import os, subprocess, sys, yaml
rules, tests, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
doc = yaml.safe_load(open(rules))
alerts = [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]
cases = [c for t in yaml.safe_load(open(tests))["tests"] for c in t.get("alert_rule_test", [])]
errs = []
for a in alerts:
    mine = [c for c in cases if c["alertname"] == a]
    if not any(c.get("exp_alerts") for c in mine):
        errs.append(f"{a}: no test where it fires")
    if not any(not c.get("exp_alerts") for c in mine):
        errs.append(f"{a}: no test where it stays quiet")
for c in cases:
    if c["alertname"] not in alerts:
        errs.append(f"test names {c['alertname']}, which alerts.yml does not define")
# mutants: each alert never / always firing must break the tests (two at a
# time: promtool takes about a second each)
from concurrent.futures import ThreadPoolExecutor
def mutant(job):
    i, a, kind, expr = job
    d = os.path.join(tmp, "m%d" % i)
    os.makedirs(d)
    open(os.path.join(d, "alerts_test.yml"), "w").write(open(tests).read())
    m = yaml.safe_load(open(rules))
    for g in m["groups"]:
        for r in g["rules"]:
            if r.get("alert") == a and expr is not None:
                r["expr"] = expr
    yaml.safe_dump(m, open(os.path.join(d, "alerts.yml"), "w"))
    p = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=d,
                       capture_output=True, text=True)
    return None if p.returncode else f"{a}: the tests still pass when it {kind}"
# the harness itself: an unmutated round trip through yaml must pass, or
# every "caught" mutant below would mean nothing
if mutant((999, "none", "is unchanged", None)) is None:
    errs.append("the unmutated rules, dumped again, fail promtool: mutants prove nothing")
jobs = [(i, a, kind, expr) for i, (a, (kind, expr)) in enumerate(
    (a, k) for a in alerts for k in (("never fires", "vector(0) > 1"), ("always fires", "vector(1)")))]
with ThreadPoolExecutor(2) as ex:
    errs += [e for e in ex.map(mutant, jobs) if e]
if errs:
    print("\n".join(errs)); sys.exit(1)
print(f"promtool_rules: {len(alerts)} alerts, each tested firing and quiet; "
      f"{2 * len(alerts)} mutants (never/always firing) all caught")
PY

# the dashboard's expressions parse
jq -r '.panels[].targets[]?.expr' "$top/compose/grafana/dashboards/odin-dispatch.json" |
python3 -c '
import sys, yaml
exprs = [l.rstrip("\n").replace("$shard", ".*") for l in sys.stdin if l.strip()]
yaml.safe_dump({"groups": [{"name": "dashboard", "rules":
    [{"record": "dashboard:expr_%d" % i, "expr": e} for i, e in enumerate(exprs)]}]}, sys.stdout)
' >"$T/dashboard_rules.yml"
n=$(grep -c 'record:' "$T/dashboard_rules.yml")
[ "$n" -gt 20 ] || fail "only $n dashboard expressions found"
promtool check rules "$T/dashboard_rules.yml" >/dev/null || { promtool check rules "$T/dashboard_rules.yml"; fail "a dashboard expression does not parse"; }
grep -q 'shard_delivery_latency_seconds_bucket' "$T/dashboard_rules.yml" || fail "no delivery latency panel"
echo "promtool_rules: $n dashboard expressions parse"
