#!/usr/bin/env bash
# The compose stack validates (no Docker engine here: `config` parses and
# checks the file, its anchors and service references, without running it).
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
out=$(docker-compose -f "$top/compose/docker-compose.yml" config)
for svc in redis redpanda topics router shard lb prometheus; do
    grep -q "^  $svc:" <<<"$out" || { echo "service $svc missing"; exit 1; }
done
# shards share the socket volume with the router and derive their socket there
grep -q 'SHARD_SOCKET_DIR: /run/odin' <<<"$out"
grep -q 'odin-sockets' <<<"$out"
# every shard setting the compose file uses exists in odin-shard --help
help=$("$ODIN_BUILD/odin-shard" --help)
for env in $(sed -n '/^  shard:/,/^  [a-z]*:$/p' "$top/compose/docker-compose.yml" | sed -n 's/^ *\([A-Z_][A-Z0-9_]*\): .*/\1/p'); do
    grep -q ", $env (" <<<"$help" || { echo "compose sets $env, which odin-shard does not know"; exit 1; }
done
help=$("$ODIN_BUILD/odin-router" --help)
for env in $(sed -n '/^  router:/,/^  shard:$/p' "$top/compose/docker-compose.yml" | sed -n 's/^ *\([A-Z_][A-Z0-9_]*\): .*/\1/p'); do
    grep -q ", $env (" <<<"$help" || { echo "compose sets $env, which odin-router does not know"; exit 1; }
done
echo "compose: valid"
