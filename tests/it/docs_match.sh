#!/usr/bin/env bash
# Docs match the code: every setting each binary's --help lists, and every
# metric a live shard and router export, is documented in docs/; the
# generated settings tables are what this build's --help generates, and the
# generated metric tables what its --metrics-list generates; and every
# metric the metric tables of docs/operations.md name is exported by a live
# shard or router (no series documented that does not exist).
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
B=$ODIN_BUILD
fail=0
for bin in odin-shard odin-router; do
    for env in $("$B/$bin" --help | sed -n 's/^  --[a-z0-9-]*, \([A-Z0-9_]*\) (.*/\1/p'); do
        grep -q "\`$env\`" "$top/docs/operations.md" || { echo "docs/operations.md lacks $bin setting $env"; fail=1; }
    done
done
for bin in odin-devbroker odin-publish odin-loadgen odin-watch odin-ctl odin-resumestorm; do
    for env in $("$B/$bin" --help | sed -n 's/^  --[a-z0-9-]*, \([A-Z0-9_]*\) (.*/\1/p'); do
        grep -rq "$env" "$top/docs/" || { echo "docs/ lacks $bin setting $env"; fail=1; }
    done
done
# The settings tables between <!-- settings:odin-X --> markers are generated
# (tools/settings-table.py); regenerated from this build they must not change
# (a default or help line edited in the code but not in the docs).
for doc in operations.md tools.md; do
    cp "$top/docs/$doc" "$ODIN_TMP/docs-match-$doc"
    python3 "$top/tools/settings-table.py" --update "$B" "$ODIN_TMP/docs-match-$doc"
    if ! cmp -s "$top/docs/$doc" "$ODIN_TMP/docs-match-$doc"; then
        echo "docs/$doc: generated settings table is stale; run tools/settings-table.py --update build docs/operations.md docs/tools.md"
        diff "$top/docs/$doc" "$ODIN_TMP/docs-match-$doc" | head -n 20
        fail=1
    fi
done

# Likewise the metric tables between <!-- metrics:odin-X --> markers
# (tools/metrics-table.py, from each binary's --metrics-list, i.e. the metric
# lists shard/metrics_list.h and router/metrics_list.h).
cp "$top/docs/operations.md" "$ODIN_TMP/docs-match-metrics.md"
python3 "$top/tools/metrics-table.py" --update "$B" "$ODIN_TMP/docs-match-metrics.md"
for bin in odin-shard odin-router; do
    grep -q "^<!-- metrics:$bin -->" "$top/docs/operations.md" ||
        { echo "docs/operations.md lacks the generated metric table of $bin (<!-- metrics:$bin -->)"; fail=1; }
done
if ! cmp -s "$top/docs/operations.md" "$ODIN_TMP/docs-match-metrics.md"; then
    echo "docs/operations.md: generated metric table is stale; run tools/metrics-table.py --update build docs/operations.md"
    diff "$top/docs/operations.md" "$ODIN_TMP/docs-match-metrics.md" | head -n 20
    fail=1
fi

# shellcheck source=../support/stack.sh

. "${ODIN_TOP:?}/tests/support/stack.sh"
stack_init docs-match
STACK_LOGS=""
sp=$(port); rp=$(port)
start_shard shard "docs-$$" "$sp" --redis-url "$ODIN_REDIS_URL"
start_router router "$rp" --kafka-brokers "$ODIN_KAFKA_BROKERS" --redis-url "$ODIN_REDIS_URL" \
    --kafka-group "docs-$$"
live=""
for p in "$sp" "$rp"; do
    # the process is starting: its HTTP server answering is the event
    wait_until 10 http_up "$p" || echo "no HTTP server on port $p"
    names=$(curl -s -m 5 "http://127.0.0.1:$p/metrics" | sed -n 's/^# HELP \([a-z_]*\) .*/\1/p')
    [ -n "$names" ] || { echo "no metrics from port $p"; fail=1; }
    for m in $names; do
        grep -q "\`$m\`" "$top/docs/operations.md" || { echo "docs/operations.md lacks metric $m"; fail=1; }
    done
    live="$live $(echo $names)"
done
# The other way: the first column of every table under a "## Metrics:"
# heading of docs/operations.md names a series one of the daemons exports.
documented=$(awk '/^## Metrics:/ { on = 1; next } /^## / { on = 0 } on' "$top/docs/operations.md" |
             sed -n 's/^| `\([a-z_][a-z0-9_]*\)` |.*/\1/p')
[ -n "$documented" ] || { echo "no metric tables found in docs/operations.md"; fail=1; }
for m in $documented; do
    case " $live " in
        *" $m "*) ;;
        *) echo "docs/operations.md documents metric $m, which neither odin-shard nor odin-router exports"; fail=1 ;;
    esac
done
# And every series any document names in prose, where the name says it is
# one (a counter, histogram or byte gauge: `..._total`, `..._seconds`,
# `..._bytes`, histograms' `_sum` / `_count` / `_bucket` too).
for f in "$top"/docs/*.md "$top"/README.md; do
    for m in $(grep -ohE '`(ws|shard|router|process|odin)_[a-z0-9_]+_(total|seconds|bytes)(_sum|_count|_bucket)?`' "$f" |
               tr -d '`' | sed -E 's/_(sum|count|bucket)$//' | sort -u); do
        case " $live " in
            *" $m "*) ;;
            *) echo "${f#"$top"/} names metric $m, which neither odin-shard nor odin-router exports"; fail=1 ;;
        esac
    done
done
[ $fail = 0 ] && echo "docs match: every setting and metric is documented"
exit $fail
