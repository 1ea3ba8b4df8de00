# shellcheck shell=bash
# Sourced by the shell integration tests that start tools/run-stack.sh.
# free_port N: the first of N consecutive free TCP ports, below the
# ephemeral range (32768+), so no outgoing connection of the stack itself
# can take one between our pick and the bind.
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
lo, hi = 20000, 32000
# tools/run-tests.sh runs tests side by side: a window per slot
k, slots = int(os.environ.get("ODIN_TEST_SLOT", 0)), int(os.environ.get("ODIN_TEST_SLOTS", 0))
if slots > 1 and 1 <= k <= slots:
    w = (hi - lo) // slots
    lo, hi = lo + (k - 1) * w, lo + k * w
while True:
    p = random.randint(lo, hi - n)
    if all(free(p + k) for k in range(n)):
        print(p)
        break
PY
}
