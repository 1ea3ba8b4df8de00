#!/usr/bin/env bash
# The #include graph of shard/ and router/ has no circle.
#
# A module is a file pair x.c / x.h (shard/fanout.c and shard/fanout.h are
# one module, shard/fanout), with its module-private header x_private.h and
# the other files of the module, x*.c, that include it (shard/clientpool.c
# and shard/client_private.h belong to shard/client; hiredis's
# async_private.h is the model).  A private header included by any other
# file fails.  Module A depends on module B when a file of A
# includes "B.h" (quoted includes of shard/ and router/ headers; common/ and
# proto/ include neither, so no circle passes through them).  The script
# finds the strongly connected components of that graph (Tarjan) and fails
# naming every component of more than one module, with a shortest circle
# through each of its modules and the includes that make it.
#
# Known circles being taken apart are listed in tests/it/include_graph.allow
# (one circle a line: its modules, space-separated; # comments).  A circle
# whose modules are all within one listed line is printed as "allowed" and
# does not fail; a new circle, or one that grew, fails.  A listed line that
# no longer matches any circle is reported so it can be deleted.
#
# Usage: tests/it/include_graph.sh [DIR...]   (default: shard router)
# Run by tools/run-tests.sh (it) like every tests/it/*.sh; needs only the
# source tree.
set -eu
top=${ODIN_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$top"
[ $# -gt 0 ] || set -- shard router
allow=${INCLUDE_GRAPH_ALLOW:-$top/tests/it/include_graph.allow}
exec python3 - "$allow" "$@" <<'PY'
import os, re, sys
from collections import deque

allow_file, dirs = sys.argv[1], sys.argv[2:]
allowed = []
if os.path.exists(allow_file):
    for line in open(allow_file):
        line = line.split('#', 1)[0].split()
        if line:
            allowed.append(set(line))
inc = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
PRIV = '_private'
def module_of_header(h):
    m = h[:-2]
    return m[:-len(PRIV)] if m.endswith(PRIV) else m
deps = {}      # module -> {module: [file that includes]}
misuse = []    # (file, private header) included from outside its module
for d in dirs:
    for f in sorted(os.listdir(d)):
        if not (f.endswith('.c') or f.endswith('.h')):
            continue
        path = os.path.join(d, f)
        incs = [h for h in inc.findall(open(path, encoding='utf-8', errors='replace').read())
                if h.endswith('.h') and h.split('/')[0] in dirs]
        # a module spanning files: a .c that includes x_private.h is part of
        # module x; only files named x*.c (x.c, xpool.c, x_redis.c) may
        mod = module_of_header(path)
        for h in incs:
            hm = module_of_header(h)
            if h[:-2].endswith(PRIV) and hm != mod:
                if path.endswith('.c') and os.path.basename(path).startswith(os.path.basename(hm)):
                    mod = hm
                else:
                    misuse.append((path, h))
        deps.setdefault(mod, {})
        for h in incs:
            tgt = module_of_header(h)
            if tgt != mod:
                deps[mod].setdefault(tgt, []).append(path)
for m in list(deps):
    for t in deps[m]:
        deps.setdefault(t, {})

# Tarjan, iterative
index, low, on, stack, sccs, n = {}, {}, set(), [], [], [0]
def strong(v0):
    work = [(v0, iter(sorted(deps[v0])))]
    index[v0] = low[v0] = n[0]; n[0] += 1; stack.append(v0); on.add(v0)
    while work:
        v, it = work[-1]
        for w in it:
            if w not in index:
                index[w] = low[w] = n[0]; n[0] += 1; stack.append(w); on.add(w)
                work.append((w, iter(sorted(deps[w]))))
                break
            if w in on:
                low[v] = min(low[v], index[w])
        else:
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                sccs.append(sorted(comp))
for v in sorted(deps):
    if v not in index:
        strong(v)

def shortest_cycle(start, comp):
    prev = {start: None}
    q = deque([start])
    while q:
        v = q.popleft()
        for w in sorted(deps[v]):
            if w not in comp:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                q.append(w)
    return None

bad = [c for c in sccs if len(c) > 1]
used = set()
failed = 0
for comp in sorted(bad):
    cs = set(comp)
    ok = [i for i, a in enumerate(allowed) if cs <= a]
    used.update(ok)
    if not ok:
        failed += 1
    print("%s among %d modules: %s" % ("CIRCLE" if not ok else "allowed circle (tests/it/include_graph.allow)",
                                       len(comp), " ".join(comp)))
    seen = set()
    for a in comp:          # every pair that includes each other first
        for b in comp:
            if a < b and b in deps[a] and a in deps[b]:
                seen.add(frozenset([(a, b), (b, a)]))
                print("  %s <-> %s" % (a, b))
                print("      %s includes %s.h" % (", ".join(sorted(set(deps[a][b]))), b))
                print("      %s includes %s.h" % (", ".join(sorted(set(deps[b][a]))), a))
    for m in comp:
        cyc = shortest_cycle(m, cs)
        key = frozenset(zip(cyc, cyc[1:]))
        if key in seen:
            continue
        seen.add(key)
        print("  " + " -> ".join(cyc))
        for a, b in zip(cyc, cyc[1:]):
            print("      %s includes %s.h" % (", ".join(sorted(set(deps[a][b]))), b))
for path, h in misuse:
    failed += 1
    print("PRIVATE HEADER: %s includes %s (only files of its module may: docs/style.md)" % (path, h))
for i, a in enumerate(allowed):
    if i not in used:
        print("note: no circle left among %s: delete that line of the allow list" % " ".join(sorted(a)))
print("include graph of %s: %d modules, %d circle(s), %d not allowed"
      % (" ".join(dirs), len(deps), len(bad), failed))
sys.exit(1 if failed else 0)
PY
