#!/usr/bin/env python3
"""What a /metrics (or /health) flood costs a shard (issue 19, attack 6).

Starts redis-server and one odin-shard per case on free 127.0.0.1 ports,
sends GET PATH from THREADS threads (a new connection per request, as an
attacker would) for SECONDS, and prints per case: requests answered 200 and
429, pages rendered per second, and the shard's CPU (utime + stime from
/proc) as % of one core and per request.

Cases: "unlimited" (ADMIN_RATE=0: every request renders, the behaviour
before issue 19) and "default" (ADMIN_RATE=100, ADMIN_BURST=200).

  bench/admin_flood.py [--build build] [--seconds 5] [--threads 4] [--path /metrics]
"""
import argparse, os, signal, socket, subprocess, sys, tempfile, threading, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait_port(port, secs=10):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return True
        except OSError:
            time.sleep(0.05)   # starting: nothing to wait on but the port
    return False

def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])   # utime + stime

def get(port, path):
    try:
        s = socket.create_connection(("127.0.0.1", port), 2)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b: break
            data += b
        s.close()
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else -1
    except OSError:
        return -1

def flood(port, path, secs, threads):
    counts = {}
    lock = threading.Lock()
    end = time.time() + secs
    def run():
        local = {}
        while time.time() < end:
            st = get(port, path)
            local[st] = local.get(st, 0) + 1
        with lock:
            for k, v in local.items(): counts[k] = counts.get(k, 0) + v
    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    return counts

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--path", default="/metrics")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="odin-admin-flood.")
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tck = os.sysconf("SC_CLK_TCK")
    try:
        wait_port(rport)
        for name, env in (("unlimited (ADMIN_RATE=0, as before)", {"ADMIN_RATE": "0"}),
                          ("default (ADMIN_RATE=100, ADMIN_BURST=200)", {})):
            port = free_port()
            e = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{rport}", WS_ADDR=f"127.0.0.1:{port}",
                     SHARD_SOCKET=f"{tmp}/s.sock", SHARD_ID=f"flood-{port}", LOG_LEVEL="error", **env)
            sh = subprocess.Popen([os.path.join(a.build, "odin-shard")], env=e,
                                  stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/shard-{port}.log", "w"))
            if not wait_port(port):
                sys.exit("shard did not start")
            c0 = cpu_ticks(sh.pid); t0 = time.time()
            counts = flood(port, a.path, a.seconds, a.threads)
            c1 = cpu_ticks(sh.pid); dt = time.time() - t0
            sh.send_signal(signal.SIGTERM); sh.wait(10)
            total = sum(counts.values())
            cpu = (c1 - c0) / tck
            print(f"{name}: {a.path} x{total} in {dt:.1f}s from {a.threads} threads: "
                  f"200={counts.get(200, 0)} 429={counts.get(429, 0)} other={total - counts.get(200, 0) - counts.get(429, 0)}; "
                  f"rendered {counts.get(200, 0) / dt:.0f}/s; shard CPU {100 * cpu / dt:.0f}% of a core, "
                  f"{1e6 * cpu / max(total, 1):.0f} us per request")
    finally:
        redis.terminate(); redis.wait(5)

if __name__ == "__main__":
    main()
