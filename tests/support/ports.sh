# shellcheck shell=bash
# Sourced by the shell integration tests that start tools/run-stack.sh.
# free_port N: the first of N consecutive free TCP ports, outside the
# ephemeral range, so no outgoing connection of the stack itself can take
# one between our pick and the bind; in this slot's part of the window
# tsup_free_port uses too.
free_port() {
    python3 - "${1:-1}" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
def free(p):
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
import os
# The same window as tsup_free_port (tests/support/support.c, port_window):
# up to 12000 ports just below the ephemeral range, else above it.  C and
# shell tests of one run must cut it into the same per-slot parts, or a
# shell test in one slot picks a port a C test of another slot was given.
elo, ehi = 32768, 60999
try:
    elo, ehi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[:2])
except (OSError, ValueError):
    pass
if elo - 1 - 1024 >= 2000:
    size = min(12000, elo - 1024); lo = elo - size
elif 65535 - ehi >= 2000:
    lo = ehi + 1; size = min(12000, 65535 - ehi)
else:
    lo, size = 1025, 64000
# tools/run-tests.sh runs tests side by side: a part of the window per slot
k, slots = int(os.environ.get("ODIN_TEST_SLOT", 0)), int(os.environ.get("ODIN_TEST_SLOTS", 0))
if slots > 1 and 1 <= k <= slots and size // slots >= 500:
    size //= slots
    lo += (k - 1) * size
hi = lo + size
while True:
    p = random.randint(lo, hi - n)
    if all(free(p + k) for k in range(n)):
        print(p)
        break
PY
}
