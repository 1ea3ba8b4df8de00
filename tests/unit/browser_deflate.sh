#!/usr/bin/env bash
# The permessage-deflate answer check of the browser test
# (tests/browser/deflate.mjs): valid RFC 7692 answers to Chromium's offer
# pass, invalid ones (client_max_window_bits not offered, bad window bits,
# unknown or repeated parameters, two extensions) are rejected.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
command -v node >/dev/null || { echo "node is not installed (tools/deps.sh)" >&2; exit 1; }
cd "$top/tests/browser" && node --test deflate.test.mjs
