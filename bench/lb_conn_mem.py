#!/usr/bin/env python3
"""haproxy memory per idle client connection, plain and TLS.

    python3 bench/lb_conn_mem.py [N]     (default 3000; needs haproxy, openssl)

Starts haproxy (a frontend like compose/haproxy.cfg's: a plain bind and an
`ssl crt` bind, TLS 1.2 minimum) in front of a local TCP sink, opens N idle
connections through each bind (16 bytes sent, so the shard side is opened
too) and prints haproxy's RSS growth per connection.  Sizes the lb
service's mem_limit (docs/operations.md, "TLS on the public port").
"""
import os, socket, ssl, subprocess, sys, tempfile, threading, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
tmp = tempfile.mkdtemp(prefix="lbmem.")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=lbmem", "-keyout", f"{tmp}/k.pem", "-out", f"{tmp}/c.pem"],
               check=True, capture_output=True)
open(f"{tmp}/m.pem", "w").write(open(f"{tmp}/c.pem").read() + open(f"{tmp}/k.pem").read())


def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


sink_p, tls_p, plain_p = port(), port(), port()
sink = socket.socket(); sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sink.bind(("127.0.0.1", sink_p)); sink.listen(4096)
held = []


def acc():
    while True:
        c, _ = sink.accept(); held.append(c)


threading.Thread(target=acc, daemon=True).start()
open(f"{tmp}/h.cfg", "w").write(f"""global
    maxconn {2 * N + 1000}
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend f
    bind 127.0.0.1:{tls_p} ssl crt {tmp}/m.pem alpn http/1.1
    bind 127.0.0.1:{plain_p}
    default_backend b
backend b
    server s 127.0.0.1:{sink_p}
""")
h = subprocess.Popen(["haproxy", "-db", "-f", f"{tmp}/h.cfg"], stderr=subprocess.DEVNULL)


def rss():
    for line in open(f"/proc/{h.pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def wait_sink(n):
    end = time.time() + 30
    while len(held) < n and time.time() < end:
        time.sleep(0.05)


for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", plain_p)).close(); break
    except OSError:
        time.sleep(0.05)
wait_sink(1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    for mode, p in (("plain", plain_p), ("tls", tls_p)):
        conns = []
        base, before = rss(), len(held)
        for _ in range(N):
            s = socket.create_connection(("127.0.0.1", p))
            if mode == "tls":
                s = ctx.wrap_socket(s, server_hostname="lbmem")
            s.send(b"x" * 16)
            conns.append(s)
        wait_sink(before + N)
        grow = rss() - base
        print(f"{mode}: {N} idle connections, haproxy RSS +{grow} KiB = {grow / N:.1f} KiB/connection",
              flush=True)
        for c in conns + held:   # this process holds 2 fds per connection
            c.close()
        held.clear()
finally:
    h.terminate(); h.wait()
    subprocess.run(["rm", "-rf", tmp])
