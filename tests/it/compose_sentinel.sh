#!/usr/bin/env bash
# The Sentinel override validates on top of the main stack, and sets only
# settings router and shard know.  That its services can reach each other
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
