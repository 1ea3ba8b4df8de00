#!/usr/bin/env bash
# Install the Debian packages odin-dispatch needs to build, test and run,
# if any is missing.  Safe to run repeatedly; needs root (or sudo) only when
# something must be installed.
set -eu
pkgs=(build-essential pkg-config clang
      libhiredis-dev libevent-dev librdkafka-dev libwslay-dev libmsgpack-dev
      libcmocka-dev libjansson-dev libssl-dev libhttp-parser-dev
      libclang-rt-14-dev redis-server redis-tools kcat jq curl python3 procps iproute2 gnuplot-nox docker-compose
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
# clients/js: the pinned TypeScript compiler and ws (tests), from
# package-lock.json; again only when the lock file changed
js="$(cd "$(dirname "$0")/.." && pwd)/clients/js"
if [ -f "$js/package-lock.json" ] && ! cmp -s "$js/package-lock.json" "$js/node_modules/.odin-lock" 2>/dev/null; then
    echo "deps: npm ci in clients/js" >&2
    (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$js/package-lock.json" "$js/node_modules/.odin-lock"
fi
