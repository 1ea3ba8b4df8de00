#!/usr/bin/env python3
"""Settings tables in the docs, from each binary's --help.

  tools/settings-table.py build/odin-shard          print the Markdown rows
  tools/settings-table.py --update BUILD FILE...    rewrite the rows between
      <!-- settings:odin-X --> and <!-- /settings:odin-X --> in FILE

tests/it/docs_match.sh checks the docs still name every setting."""
import re, subprocess, sys

def parse(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    rows, cur = [], None
    for line in out.splitlines():
        m = re.match(r"  --([a-z0-9-]+), ([A-Z0-9_]+) \((\w+)\)", line)
        if m:
            cur = {"env": m.group(2), "type": m.group(3), "help": "", "default": ""}
            rows.append(cur)
        elif line.startswith("  --help"):
            cur = None
        elif cur and line.startswith("      default: "):
            cur["default"] = line[len("      default: "):]
        elif cur and line.startswith("      range: "):
            cur["help"] += " (range " + line[len("      range: "):] + ")"
        elif cur and line.startswith("      "):
            cur["help"] += (" " if cur["help"] else "") + line.strip()
    return rows

def table(binary):
    out = []
    for row in parse(binary):
        d = row["default"].replace("|", "\\|")
        h = row["help"].replace("|", "\\|")
        out.append(f"| `{row['env']}` | {d} | {h} |\n")
    return "".join(out)

if __name__ == "__main__":
    if sys.argv[1] == "--update":
        build = sys.argv[2]
        for path in sys.argv[3:]:
            text = open(path).read()
            def repl(m):
                return m.group(1) + table(f"{build}/{m.group(2)}") + m.group(3)
            text = re.sub(r"(<!-- settings:(odin-[a-z]+) -->\n)(?:.*?\n)?(<!-- /settings:\2 -->)",
                          repl, text, flags=re.S)
            open(path, "w").write(text)
    else:
        sys.stdout.write(table(sys.argv[1]))
