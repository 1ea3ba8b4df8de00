#!/usr/bin/env bash
# Install the Debian packages odin-dispatch needs to build, test and run,
# if any is missing.  Safe to run repeatedly; needs root (or sudo) only when
# something must be installed.
set -eu
pkgs=(build-essential pkg-config clang
      libhiredis-dev libevent-dev librdkafka-dev libwslay-dev libmsgpack-dev
      libcmocka-dev libjansson-dev libssl-dev libhttp-parser-dev
      libclang-rt-14-dev zlib1g-dev nodejs npm redis-server redis-tools kcat jq curl python3 procps iproute2 gnuplot-nox docker-compose
      prometheus haproxy python3-yaml)   # promtool and haproxy -c check compose/ in make test
missing=()
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
# Node's `ws` for tests/it/deflate_ws.sh (a second WebSocket implementation
# with permessage-deflate), pinned by tests/it/node/package-lock.json
node_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/it/node"
if [ ! -d "$node_dir/node_modules/ws" ]; then
    (cd "$node_dir" && npm ci --no-audit --no-fund --silent)
fi
