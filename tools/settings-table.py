#!/usr/bin/env python3
"""Print a Markdown table of a binary's settings from its --help output.
Used to write docs/operations.md; tests/it/docs_match.sh checks the docs
still name every setting the binaries have."""
import re, subprocess, sys

def parse(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    rows, cur = [], None
    for line in out.splitlines():
        m = re.match(r"  --([a-z0-9-]+), ([A-Z0-9_]+) \((\w+)\)", line)
        if m:
            cur = {"env": m.group(2), "type": m.group(3), "help": "", "default": ""}
            rows.append(cur)
        elif cur and line.startswith("      default: "):
            cur["default"] = line[len("      default: "):]
        elif cur and line.startswith("      range: "):
            cur["help"] += " (range " + line[len("      range: "):] + ")"
        elif line.startswith("  --help"):
            cur = None
        elif cur and line.startswith("      "):
            cur["help"] += (" " if cur["help"] else "") + line.strip()
    return rows

if __name__ == "__main__":
    for row in parse(sys.argv[1]):
        d = row["default"].replace("|", "\\|")
        h = row["help"].replace("|", "\\|")
        print(f"| `{row['env']}` | {d} | {h} |")
