#!/usr/bin/env python3
"""What a compose model means, not only whether it parses.

    compose_check.py LABEL RESOLVED.yml [--lb-fds N]

RESOLVED.yml is `docker-compose -f base [-f override...] config` output (the
merged model, variables interpolated, bind-mount sources absolute).  Checks:

  reachability  every hostname a service's settings name resolves to a
                service on a network shared with it, and the port is one
                that service declares (expose / ports).  Read from: the
                environment (*_URL, *_BROKERS, *_SENTINELS, *_ENDPOINT,
                *_HOST, *_TARGETS), the command (replicaof, sentinel
                monitor, --brokers, connect=), and the configuration files
                the service mounts: haproxy.cfg backends, prometheus.yml
                scrape and alertmanager targets, alertmanager.yml receivers,
                Grafana datasources, stunnel.conf.  A single-label name can
                only be a compose service; a dotted name is external and is
                not checked (e.g. a managed Redis, a placeholder *.invalid).
  pinned        every image has a version tag (x.y[.z]) or a digest; an
                image built here is checked through its Dockerfile's FROM.
  operability   restart policy, healthcheck, memory and CPU limits, log
                rotation (max-size and max-file) on every service; a
                one-shot job (another service waits for it to complete)
                restarts on-failure and may disable its healthcheck.
  fds           haproxy's nofile covers what its maxconn needs (--lb-fds:
                the figure haproxy itself asks for, measured by the caller;
                else 2 x maxconn + 1000); a shard's WS_MAX_CONNECTIONS fits
                its nofile (minus WS_FD_RESERVE and WS_MAX_PENDING).
  redis auth    every redis-server requires a password, every client of it
                (REDIS_URL user) sends the same one, replicas carry
                masterauth and Sentinels auth-pass.

Prints one line per problem ("LABEL: service: problem") and exits 1 if any.
"""
import ipaddress
import os
import re
import shlex
import sys
from urllib.parse import urlparse

import yaml

label, path = sys.argv[1], sys.argv[2]
lb_fds = None
if "--lb-fds" in sys.argv:
    lb_fds = int(sys.argv[sys.argv.index("--lb-fds") + 1])
doc = yaml.safe_load(open(path))
svcs = doc.get("services", {})
nets_decl = doc.get("networks") or {}
errs = []


def err(svc, msg):
    m = f"{label}: {svc}: {msg}"
    if m not in errs:
        errs.append(m)


def as_list(v):
    if v is None:
        return []
    if isinstance(v, str):
        return shlex.split(v)
    return [str(x) for x in v]


def env_of(s):
    e = s.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, "") for x in e)
    return {k: ("" if v is None else str(v)) for k, v in e.items()}


def networks_of(name):
    s = svcs[name]
    nm = s.get("network_mode", "")
    if nm.startswith("service:"):
        return networks_of(nm.split(":", 1)[1])
    n = s.get("networks")
    if n is None:
        return {"default"}
    return set(n.keys() if isinstance(n, dict) else n)


def aliases(name, net):
    n = svcs[name].get("networks")
    names = {name}
    if svcs[name].get("container_name"):
        names.add(svcs[name]["container_name"])
    if isinstance(n, dict) and isinstance(n.get(net), dict):
        names.update(n[net].get("aliases") or [])
    return names


def addresses(name):
    n = svcs[name].get("networks")
    out = set()
    if isinstance(n, dict):
        for v in n.values():
            if isinstance(v, dict) and v.get("ipv4_address"):
                out.add(v["ipv4_address"])
    return out


def declared_ports(name):
    s = svcs[name]
    out = {str(p).split("/")[0] for p in s.get("expose") or []}
    for p in s.get("ports") or []:
        if isinstance(p, dict):
            out.add(str(p.get("target")))
        else:
            out.add(str(p).split(":")[-1].split("/")[0])
    return out


def is_ip(h):
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        return False


def ref(svc, host, port, where):
    """svc names host:port in `where`: check that it reaches a service."""
    if not host or host in ("localhost", "0.0.0.0", "::") or host.startswith("127."):
        return
    port = str(port) if port not in (None, "") else None
    mine = networks_of(svc)
    if is_ip(host):
        owners = [n for n in svcs if host in addresses(n)]
        if not owners:
            return                      # not a compose address
        targets = owners
    elif "." in host:
        return                          # external (DNS outside compose)
    else:
        targets = [n for n in svcs if any(host in aliases(n, net) for net in networks_of(n))]
        if not targets:
            err(svc, f"{where} names {host}{':' + port if port else ''}, which is no service")
            return
    for t in targets:
        shared = mine & networks_of(t)
        if not shared or not any(host in aliases(t, n) or is_ip(host) for n in shared):
            err(svc, f"{where} names {host}{':' + port if port else ''}: service {t} is on "
                     f"network(s) {sorted(networks_of(t))}, {svc} on {sorted(mine)}: "
                     f"no shared network, {host} does not resolve from {svc}")
            continue
        if port and t != svc:
            dp = declared_ports(t)
            if port not in dp:
                err(svc, f"{where} names {host}:{port}, but {t} declares no port {port} "
                         f"(expose/ports: {sorted(dp) or 'none'})")


def hostport(s, default_port=None):
    s = s.strip()
    if "://" in s:
        u = urlparse(s)
        if u.scheme == "unix":
            return None, None
        return u.hostname, u.port or default_port
    if s.startswith("unix:") or s.startswith("/"):
        return None, None
    m = re.match(r"^\[?([^\]]+?)\]?(?::(\d+))?$", s)
    return (m.group(1), m.group(2) or default_port) if m else (None, None)


ENV_REF = re.compile(r"(_URL|_BROKERS|_SENTINELS|_ENDPOINT|_HOST|_TARGETS)$")
DEFAULT_PORT = {"REDIS_URL": 6379, "KAFKA_BROKERS": 9092}


def mounts(s):
    """(source, target) of each bind mount."""
    out = []
    for v in s.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type", "bind") == "bind" and v.get("source"):
                out.append((v["source"], v["target"]))
        else:
            parts = str(v).split(":")
            if len(parts) >= 2 and parts[0].startswith("/"):
                out.append((parts[0], parts[1]))
    return out


def mounted_files(s):
    for src, _ in mounts(s):
        if os.path.isdir(src):
            for root, _, files in os.walk(src):
                for f in files:
                    yield os.path.join(root, f)
        elif os.path.isfile(src):
            yield src


def lb_env_subst(text, env):
    return re.sub(r'"?\$\{([A-Z0-9_]+)\}"?', lambda m: env.get(m.group(1), m.group(0)), text)


def check_haproxy(svc, f, env):
    text = lb_env_subst(open(f).read(), env)
    maxconn = None
    section = ""
    for line in text.splitlines():
        w = line.split("#", 1)[0].split()
        if not w:
            continue
        if not line[0].isspace():
            section = w[0]
        if section == "global" and w[0] == "maxconn":
            maxconn = int(w[1])
        hp = None
        if w[0] == "server" and len(w) > 2:
            hp = w[2]
        elif w[0] == "server-template" and len(w) > 3:
            hp = w[3]
        if hp:
            h, p = hostport(hp)
            ref(svc, h, p, f"{os.path.basename(f)} {w[0]} {w[1]}")
            if "port" in w[3:]:
                ref(svc, h, w[w.index("port", 3) + 1], f"{os.path.basename(f)} {w[0]} {w[1]} check")
    return maxconn


def check_prometheus(svc, f):
    d = yaml.safe_load(open(f)) or {}
    for job in d.get("scrape_configs") or []:
        for sd in job.get("dns_sd_configs") or []:
            for n in sd.get("names") or []:
                ref(svc, n, sd.get("port"), f"prometheus job {job['job_name']}")
        for sc in job.get("static_configs") or []:
            for t in sc.get("targets") or []:
                h, p = hostport(t)
                ref(svc, h, p, f"prometheus job {job['job_name']}")
    am = ((d.get("alerting") or {}).get("alertmanagers")) or []
    for a in am:
        for sc in a.get("static_configs") or []:
            for t in sc.get("targets") or []:
                h, p = hostport(t)
                ref(svc, h, p, "prometheus alerting")
        for sd in a.get("dns_sd_configs") or []:
            for n in sd.get("names") or []:
                ref(svc, n, sd.get("port"), "prometheus alerting")
    return bool(am), d


def walk_urls(svc, node, where):
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str) and (k == "url" or k.endswith("_url")) and "://" in v:
                h, p = hostport(v)
                if p is None:
                    p = 443 if v.startswith("https") else 80
                ref(svc, h, p, f"{where} {k}")
            else:
                walk_urls(svc, v, where)
    elif isinstance(node, list):
        for v in node:
            walk_urls(svc, v, where)


def check_command(svc, s):
    argv = as_list(s.get("entrypoint")) + as_list(s.get("command"))
    text = " ".join(argv)
    for m in re.finditer(r"(?:--)?replicaof\s+(\S+)\s+(\d+)", text):
        ref(svc, m.group(1), m.group(2), "replicaof")
    for m in re.finditer(r"sentinel monitor \S+ (\S+) (\d+)", text):
        ref(svc, m.group(1), m.group(2), "sentinel monitor")
    for m in re.finditer(r"--brokers[= ](\S+)", text):
        for b in m.group(1).split(","):
            h, p = hostport(b.strip("'\";"))
            ref(svc, h, p, "--brokers")
    for m in re.finditer(r"connect\s*=\s*([^\s\\']+)", text):
        h, p = hostport(m.group(1))
        ref(svc, h, p, "stunnel connect")
    return text


# --- reachability ------------------------------------------------------------
lb_maxconn = {}
alerting = {}
for name, s in svcs.items():
    env = env_of(s)
    for k, v in env.items():
        if not ENV_REF.search(k) or not v:
            continue
        for part in v.split(","):
            h, p = hostport(part, DEFAULT_PORT.get(k))
            ref(name, h, p, k)
    check_command(name, s)
    for f in mounted_files(s):
        base = os.path.basename(f)
        if base == "haproxy.cfg":
            lb_maxconn[name] = (check_haproxy(name, f, env), f)
        elif base == "prometheus.yml" and "prometheus" in (s.get("image") or ""):
            alerting[name] = check_prometheus(name, f)
        elif base in ("alertmanager.yml",) or "/datasources/" in f:
            walk_urls(name, yaml.safe_load(open(f)), base)
        elif base.endswith(".conf") and "stunnel" in f:
            for m in re.finditer(r"^\s*connect\s*=\s*(\S+)", open(f).read(), re.M):
                h, p = hostport(m.group(1))
                ref(name, h, p, f"{base} connect")

for name, (has_am, _) in alerting.items():
    if not has_am:
        err(name, "prometheus.yml has no alerting.alertmanagers: alerts go nowhere")
if alerting and not any("alertmanager" in (s.get("image") or "") for s in svcs.values()):
    err("-", "no Alertmanager service: alerts go nowhere")

# --- pinned images -----------------------------------------------------------
PIN = re.compile(r"^(v?\d+\.\d+(\.\d+)?([-._][A-Za-z0-9.]+)*|[a-z]+-\d{8}([-.][A-Za-z0-9.]+)*)$")


def pinned(image):
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return False
    tag = last.split(":", 1)[1]
    return tag != "latest" and bool(PIN.match(tag))


built = {s.get("image") for s in svcs.values() if s.get("build") and s.get("image")}
for name, s in svcs.items():
    img = s.get("image")
    if s.get("build"):
        b = s["build"]
        ctx = b if isinstance(b, str) else b.get("context", ".")
        df = os.path.join(ctx, (b.get("dockerfile") if isinstance(b, dict) else None) or "Dockerfile")
        if not os.path.isfile(df):
            err(name, f"Dockerfile {df} not found")
            continue
        for line in open(df):
            m = re.match(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", line, re.I)
            if m and not pinned(m.group(1)) and not re.match(r"^[a-z]+$", m.group(1)):
                err(name, f"{os.path.relpath(df, ctx)}: FROM {m.group(1)} is a floating tag (pin x.y or a digest)")
    elif not img:
        err(name, "no image")
    elif img not in built and not pinned(img):
        err(name, f"image {img} is not pinned (a version tag x.y[.z] or @sha256 digest)")

# --- operability: restart, healthcheck, limits, log rotation -----------------
jobs = set()
for s in svcs.values():
    dep = s.get("depends_on") or {}
    if isinstance(dep, dict):
        for d, c in dep.items():
            if isinstance(c, dict) and c.get("condition") == "service_completed_successfully":
                jobs.add(d)
for name, s in svcs.items():
    r = s.get("restart")
    if name in jobs:
        if not str(r or "").startswith("on-failure"):
            errs.append(f"{label}: {name}: one-shot job without restart: on-failure (is {r})")
    elif r not in ("unless-stopped", "always"):
        err(name, f"no restart policy (restart: {r})")
    hc = s.get("healthcheck")
    disabled = hc is not None and (hc.get("disable") or as_list(hc.get("test"))[:1] == ["NONE"])
    if hc is None or (not disabled and not hc.get("test")):
        err(name, "no healthcheck")
    elif disabled and name not in jobs:
        err(name, "healthcheck disabled on a long-running service")
    lim = (((s.get("deploy") or {}).get("resources") or {}).get("limits")) or {}
    if not (s.get("mem_limit") or lim.get("memory")):
        err(name, "no memory limit (mem_limit or deploy.resources.limits.memory)")
    if not (s.get("cpus") or lim.get("cpus")):
        err(name, "no CPU limit (cpus or deploy.resources.limits.cpus)")
    lg = s.get("logging") or {}
    opts = lg.get("options") or {}
    if lg.get("driver", "json-file") not in ("json-file", "local") or \
            not opts.get("max-size") or not opts.get("max-file"):
        err(name, f"no log rotation (logging: json-file/local with max-size and max-file; is {lg or 'unset'})")

# --- file descriptors --------------------------------------------------------


def nofile(s):
    u = (s.get("ulimits") or {}).get("nofile")
    if u is None:
        return None
    if isinstance(u, dict):
        return min(int(u.get("soft", u.get("hard"))), int(u.get("hard", u.get("soft"))))
    return int(u)


for name, (mc, f) in lb_maxconn.items():
    nf = nofile(svcs[name])
    if mc is None:
        err(name, f"{os.path.basename(f)}: no global maxconn (haproxy derives it from an unknown fd limit)")
        continue
    need = lb_fds if lb_fds is not None else 2 * mc + 1000
    if nf is None:
        err(name, f"haproxy maxconn {mc} needs {need} fds but the service sets no ulimits nofile "
                  "(the default limit does not start: 'Cannot raise FD limit')")
    elif nf < need:
        err(name, f"haproxy maxconn {mc} needs {need} fds (about 2 per connection + listeners "
                  f"and checks), ulimits nofile is {nf}")
for name, s in svcs.items():
    cmd = as_list(s.get("command"))
    if not cmd or cmd[0] != "odin-shard":
        continue
    env = env_of(s)
    nf = nofile(s)
    reserve = int(env.get("WS_FD_RESERVE", 64))
    pending = int(env.get("WS_MAX_PENDING", 256))
    maxc = int(env.get("WS_MAX_CONNECTIONS", 0))
    if nf is None:
        err(name, "no ulimits nofile: the shard's capacity depends on the host default")
        continue
    if nf - reserve - pending < 1000:
        err(name, f"nofile {nf} leaves {nf - reserve - pending} client slots")
    if maxc > 0 and maxc > nf - reserve - pending:
        err(name, f"WS_MAX_CONNECTIONS {maxc} > nofile {nf} - WS_FD_RESERVE {reserve} - "
                  f"WS_MAX_PENDING {pending}")

# --- Redis authentication ----------------------------------------------------


def arg_after(argv_text, flag):
    m = re.search(re.escape(flag) + r"[= ]\"?([^\s\"']+)", argv_text)
    return m.group(1) if m else None


servers = {}
for name, s in svcs.items():
    text = " ".join(as_list(s.get("entrypoint")) + as_list(s.get("command")))
    img = s.get("image") or ""
    if not img.startswith("redis:") and "redis-server" not in text:
        continue
    if "--sentinel" in text or "redis-sentinel" in text:
        if not re.search(r"sentinel auth-pass \S+ \S+", text):
            err(name, "Sentinel without `sentinel auth-pass`: it cannot watch a master that requires a password")
        continue
    if "redis-server" not in text and not (img.startswith("redis:") and not text):
        continue
    pw = arg_after(text, "--requirepass")
    if not pw:
        err(name, "redis-server without --requirepass: anyone on the network may read and write routes")
        continue
    servers[name] = pw
    if re.search(r"--replicaof", text) and not arg_after(text, "--masterauth"):
        err(name, "replica without --masterauth: it cannot sync from a master that requires a password")
if servers:
    for name, s in svcs.items():
        env = env_of(s)
        if "REDIS_URL" not in env:
            continue
        u = urlparse(env["REDIS_URL"])
        pw = env.get("REDIS_PASSWORD") or u.password
        if not pw:
            err(name, "REDIS_URL without a password and no REDIS_PASSWORD: Redis refuses it")
        elif pw not in servers.values():
            err(name, "its Redis password is not the one redis-server requires")

if errs:
    print("\n".join(errs))
    sys.exit(1)
print(f"{label}: {len(svcs)} services: references resolve on shared networks, images pinned, "
      "restart/healthcheck/limits/log rotation set, fd limits fit, Redis authenticated")
