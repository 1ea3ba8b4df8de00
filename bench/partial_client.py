#!/usr/bin/env python3
"""Hostile WebSocket clients for bench/hostile.sh: open N connections to a
shard, upgrade each, then send the header of a text frame declaring DECLARED
bytes and only SENT bytes of it (a slow-loris on frames).  Holds them open,
prints one JSON line with counts when told to (stdin line "report"), and
exits when stdin closes.  Only loopback targets; bounded in count and time.

  partial_client.py PORT N DECLARED SENT [SRC_ADDR...]
"""
import base64, json, os, selectors, socket, struct, sys, time

port, n, declared, sent = (int(a) for a in sys.argv[1:5])
srcs = sys.argv[5:] or ["127.0.0.1"]
assert n <= 19000 and declared < 65536
key = base64.b64encode(os.urandom(16)).decode()
req = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
       "Sec-WebSocket-Version: 13\r\n\r\n" % key).encode()
frame = bytes([0x81, 0x80 | 126]) + struct.pack(">H", declared) + b"\0\0\0\0" + b" " * sent

socks, upgraded, refused, closed_1013, other = [], 0, 0, 0, 0
t0 = time.time()
for i in range(n):
    s = socket.socket()
    s.bind((srcs[i % len(srcs)], 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(req)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        refused += 1
        s.close()
        continue
    upgraded += 1
    s.sendall(frame)
    s.setblocking(False)
    socks.append(s)
ramp = time.time() - t0

def scan():
    """Count connections the server closed, by close code."""
    global closed_1013, other
    alive = []
    for s in socks:
        try:
            d = s.recv(64)
        except BlockingIOError:
            alive.append(s)
            continue
        except OSError:
            d = b""
        if len(d) >= 4 and d[0] == 0x88 and struct.unpack(">H", d[2:4])[0] == 1013:
            closed_1013 += 1
        else:
            other += 1
        s.close()
    socks[:] = alive

for line in sys.stdin:
    if line.strip() == "report":
        scan()
        print(json.dumps({"upgraded": upgraded, "refused_http": refused, "held": len(socks),
                          "closed_1013": closed_1013, "closed_other": other,
                          "ramp_s": round(ramp, 2)}), flush=True)
for s in socks:
    s.close()
