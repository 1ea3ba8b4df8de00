#!/usr/bin/env bash
# Install the Debian packages odin-dispatch needs to build, test and run,
# if any is missing.  Safe to run repeatedly; needs root (or sudo) only when
# something must be installed.
set -eu
pkgs=(build-essential pkg-config clang
      libhiredis-dev libevent-dev librdkafka-dev libwslay-dev libmsgpack-dev
      libcmocka-dev libjansson-dev libssl-dev libhttp-parser-dev
      libclang-rt-14-dev zlib1g-dev redis-server redis-tools kcat jq curl python3 procps iproute2 gnuplot-nox docker-compose
      prometheus haproxy python3-yaml   # promtool and haproxy -c check compose/ in make test
      stunnel4    # tests/it/redis_tls_tunnel.sh: Redis over TLS through the compose sidecar
      chromium)   # headless, for tests/it/browser.sh (driven over --remote-debugging-pipe: no npm package)
missing=()
# Node.js and npm for clients/js (Debian 12: nodejs 18); a node already on
# the PATH (another packaging) is used as it is
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# npm packages, pinned by each package-lock.json, installed again only when
# the lock file changed: clients/js (the TypeScript compiler and ws, for the
# client library's tests) and tests/it/node (Node's ws for
# tests/it/deflate_ws.sh, a second WebSocket implementation with
# permessage-deflate)
top="$(cd "$(dirname "$0")/.." && pwd)"
for d in "$top/clients/js" "$top/tests/it/node"; do
    [ -f "$d/package-lock.json" ] || continue
    cmp -s "$d/package-lock.json" "$d/node_modules/.odin-lock" 2>/dev/null && continue
    echo "deps: npm ci in ${d#$top/}" >&2
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$d/package-lock.json" "$d/node_modules/.odin-lock"
done
