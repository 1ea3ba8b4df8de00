#!/usr/bin/env bash
# Every path the repository cites exists in it, and nothing cites a file
# outside it.
#
# Scans every source, script and document of the repository (.h .c .md .sh
# .py .yml, Makefiles; build output excluded) for
#   * paths under a top-level directory of the repository (common/net.c,
#     tests/unit/test_net.c, docs/protocol.md, tests/it/*.sh, common/net.{c,h},
#     shard/settings.*), which must exist (globs must match something);
#   * bare test file names (test_net.c), which must exist under tests/, and
#     test cases cited after their file (`test_net` `test_redislink_...`),
#     which must occur in that file;
#   * relative Markdown links ([x](scaling.md#anchor)), which must exist
#     relative to the document, and their #anchor must name a heading of
#     the target (GitHub's anchors);
#   * citations of files outside the repository: the design, library and
#     style notes the project started from (by their file names), or
#     absolute paths under /work/.  The contract lives in docs/contract.md,
#     library facts in docs/dependencies.md, the house style in
#     docs/style.md.
# Prints one line per finding (file:line: what) and exits 1 if any.
# Needs no server: run by tools/run-tests.sh like every tests/it/*.sh, or
# directly (ODIN_TOP defaults to the repository this script is in).
set -euo pipefail
top=${ODIN_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
exec python3 - "$top" <<'PY'
import bisect, functools, glob, os, re, sys

top = sys.argv[1]
# Top-level directories whose paths are checked.  build*/ and run/ are
# output, not repository files.
dirs = sorted(d for d in os.listdir(top)
              if os.path.isdir(os.path.join(top, d))
              and not d.startswith(('.', 'build')) and d != 'run')
exts = ('.h', '.c', '.md', '.sh', '.py', '.yml', '.yaml')
files = []
for root, subdirs, names in os.walk(top):
    rel = os.path.relpath(root, top)
    first = rel.split(os.sep)[0]
    if rel != '.' and first.startswith(('.', 'build')) or first == 'run' or \
            rel.startswith(os.path.join('tests', 'fuzz', 'build')) or \
            'node_modules' in rel.split(os.sep):   # npm packages (npm ci)
        subdirs[:] = []
        continue
    for n in names:
        if n.endswith(exts) or n == 'Makefile':
            files.append(os.path.join(rel, n) if rel != '.' else n)
files.sort()

# A path under a top-level directory: not glued to a longer word, path or
# URL on its left; ends at a character that cannot be part of a file name.
path_re = re.compile(
    r'(?<![\w./@:<>{}*-])((?:%s)/[\w./*{},<>-]*[\w*}>])' % '|'.join(map(re.escape, dirs)))
bare_test_re = re.compile(r'(?<![\w/.*-])(test_\w+\.c)\b')
md_link_re = re.compile(r'\]\(([^)\s#]*)(?:#([^)\s]*))?\)')
outside_re = re.compile(r'\b(?:DESIGN|LIBRARIES|STYLE)\.md\b|(?<![\w.])/work/')

def expand_braces(p):
    m = re.search(r'\{([^{}]*)\}', p)
    if not m:
        return [p]
    out = []
    for alt in m.group(1).split(','):
        out += expand_braces(p[:m.start()] + alt + p[m.end():])
    return out

def skip_path(p):
    parts = p.split('/')
    if '<' in p or '>' in p:                     # tests/fuzz/regress/<target>/
        return True
    if any(re.fullmatch(r'[A-Z][A-Z_]*(\.\w+)?', c) for c in parts):   # bench/NAME.sh
        return True
    if p.endswith(('.o', '.d')) or p.startswith('tests/fuzz/build'):
        return True                               # build output
    if len(parts) == 2 and parts[1] in dirs:      # prose: "shard/router"
        return True
    return False

def exists(p, base=top):
    # a module cited without extension (common/net) is its .c or .h
    if '.' not in os.path.basename(p) and '*' not in p and '{' not in p:
        full = os.path.normpath(os.path.join(base, p))
        return any(os.path.exists(full + x) for x in ('', '.c', '.h'))

    for q in expand_braces(p):
        full = os.path.normpath(os.path.join(base, q))
        if not (glob.glob(full) if '*' in q else os.path.exists(full)):
            return False
    return True

@functools.lru_cache(maxsize=None)
def slugs(path):
    # GitHub's heading anchors: lower case, punctuation dropped (letters,
    # digits, '_', '-' and spaces kept), spaces -> '-', repeats get -1, -2
    out, seen, fence = set(), {}, False
    for line in open(path, encoding='utf-8'):
        if line.startswith('```'):
            fence = not fence
        m = None if fence else re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', line)
        if not m:
            continue
        slug = re.sub(r'[^\w\- ]', '', m.group(1).lower()).replace(' ', '-')
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else '%s-%d' % (slug, n))
    return out

test_names = set()
test_src = {}            # test file stem -> its text (for cited test cases)
for root, _, names in os.walk(os.path.join(top, 'tests')):
    test_names.update(n for n in names if n.startswith('test_'))
    for n in names:
        if n.startswith('test_') and n.endswith('.c'):
            test_src[n[:-2]] = open(os.path.join(root, n), encoding='utf-8').read()
# "`test_net` `test_redislink_ready_after_auth`": a test case named after
# its file, also across a line break of a comment or paragraph
case_re = re.compile(r'`?(test_\w+)`?,?\s*(?:\n\s*\*?\s*)?`(test_\w+)`')

self_path = os.path.join('tests', 'it', 'header_refs.sh')
findings = []
for f in files:
    if f == self_path:
        continue
    try:
        text = open(os.path.join(top, f), encoding='utf-8').read()
    except UnicodeDecodeError:
        continue
    nl = [m.start() for m in re.finditer('\n', text)]
    def at(pos):
        return '%s:%d' % (f, bisect.bisect_left(nl, pos) + 1)
    for m in case_re.finditer(text):
        stem, case = m.group(1), m.group(2)
        if stem in test_src and case not in test_src and \
                not re.search(r'\b%s\b' % re.escape(case), test_src[stem]):
            findings.append('%s: cites test case %s of %s, which has none of that name'
                            % (at(m.start()), case, stem))
    for m in outside_re.finditer(text):
        findings.append('%s: cites %s, outside the repository' % (at(m.start()), m.group(0)))
    for m in path_re.finditer(text):
        p = m.group(1).rstrip('.,')
        if p.endswith('}') and '{' not in p:
            p = p[:-1]              # ${X:?run through tools/run-tests.sh}
        if skip_path(p):
            continue
        if not exists(p):
            findings.append('%s: cites %s, which does not exist' % (at(m.start()), p))
    for m in bare_test_re.finditer(text):
        if m.group(1) not in test_names:
            findings.append('%s: cites %s, which is not under tests/' % (at(m.start()), m.group(1)))
    if f.endswith('.md'):
        for m in md_link_re.finditer(text):
            t, anchor = m.group(1), m.group(2)
            if re.match(r'[a-z]+:', t) or t.startswith('/'):
                continue
            base = os.path.join(top, os.path.dirname(f))
            if t and not exists(t, base):
                findings.append('%s: links %s, which does not exist' % (at(m.start()), t))
                continue
            target = os.path.normpath(os.path.join(base, t)) if t else os.path.join(top, f)
            if anchor and target.endswith('.md') and anchor not in slugs(target):
                findings.append('%s: links %s#%s, a heading that does not exist'
                                % (at(m.start()), t, anchor))

for x in findings:
    print(x)
if findings:
    print('%d citation(s) of missing or outside files' % len(findings))
    sys.exit(1)
print('every cited path exists in the repository (%d files scanned)' % len(files))
PY
