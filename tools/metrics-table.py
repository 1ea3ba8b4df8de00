#!/usr/bin/env python3
"""Metric tables in the docs, from each binary's metric list
(shard/metrics_list.h, router/metrics_list.h) via its hidden --metrics-list.

  tools/metrics-table.py build/odin-shard          print the Markdown rows
  tools/metrics-table.py --update BUILD FILE...    rewrite the table between
      <!-- metrics:odin-X --> and <!-- /metrics:odin-X --> in FILE

tests/it/docs_match.sh checks the tables are current."""
import re, subprocess, sys

def rows(binary):
    out = subprocess.run([binary, "--metrics-list"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        name, typ, labels, values, help_ = line.split("\t")
        yield name, typ, labels, values, help_

def table(binary):
    out = ["| metric | type | labels | help (as on /metrics) |\n", "|---|---|---|---|\n"]
    for name, typ, labels, values, help_ in rows(binary):
        labs = [f"`{l}`" for l in labels.split(",")] if labels else []
        if values:   # the first label's values
            labs[0] += ": " + ", ".join(f"`{v}`" for v in values.split(","))
        lab = "; ".join(labs)
        h = help_.replace("|", "\\|")
        out.append(f"| `{name}` | {typ} | {lab} | {h} |\n")
    return "".join(out)

if __name__ == "__main__":
    if sys.argv[1] == "--update":
        build = sys.argv[2]
        for path in sys.argv[3:]:
            text = open(path).read()
            def repl(m):
                return m.group(1) + table(f"{build}/{m.group(2)}") + m.group(3)
            text = re.sub(r"(<!-- metrics:(odin-[a-z]+) -->\n)(?:.*?\n)?(<!-- /metrics:\2 -->)",
                          repl, text, flags=re.S)
            open(path, "w").write(text)
    else:
        sys.stdout.write(table(sys.argv[1]))
