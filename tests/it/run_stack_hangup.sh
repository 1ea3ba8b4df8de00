#!/usr/bin/env bash
# `make run` leaves nothing behind when its terminal goes away.  The services
# run in their own sessions (so Ctrl-C reaches only the script), which is
# also why a closed terminal's SIGHUP never reaches them: the script must
# stop them itself.  Two ways the terminal goes:
#   hangup: the stack runs under script(1) on a pseudo-terminal, below a
#           shell, as in a terminal window or an SSH session; script is
#           killed, its pty closes, the kernel hangs the session up (SIGHUP).
#   shell:  as hangup, but the shell the script runs under is SIGKILLed (the
#           kernel hangs up the terminal's foreground group);
#   parent: the script's parent (make) is SIGKILLed, no terminal involved:
#           the script notices and stops everything;
#   kill:   the script itself is killed with SIGKILL (no trap runs); its
#           watchdog sees its pipe close and stops what it started.
# Each time: every process of the stack (the script's descendants, taken
# when it was running) is gone and every port it listened on is free within
# 5 s, polled.  The old script left redis, devbroker, router and shards
# running, holding their ports ("port 16379 is in use" on the next make run).
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"

descendants() {   # pid -> its descendants' pids, one a line
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END { found[root] = 1; n = 1
              while (n) { n = 0
                  for (p in parent) if (!(p in found) && (parent[p] in found)) { found[p] = 1; n = 1 } }
              for (p in found) if (p != root) print p }'
}
starttime() { awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null || true; }
alive() {   # pid starttime: the same process still there and not a zombie
    local st
    st=$(awk '{ print $3 " " $22 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st% *}" != Z ] && [ "${st#* }" = "$2" ]
}
port_held() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

run_case() {   # name how
    local name=$1 how=$2
    local run_dir out
    run_stack_env "run-stack-$name"
    local envs=("${RUN_STACK_ENV[@]}" PUBLISH_RATE=100)
    local leader
    if [ "$how" = hangup ] || [ "$how" = shell ]; then
        # a terminal: script(1) gives the shell a pty as its controlling
        # terminal, in a session of its own
        SHELL=/bin/bash setsid script -qfec \
            "env ${envs[*]} $top/tools/run-stack.sh; echo after" /dev/null >"$out" 2>&1 &
        leader=$!
    elif [ "$how" = parent ]; then
        setsid bash -c "env ${envs[*]} $top/tools/run-stack.sh; echo after" >"$out" 2>&1 &
        leader=$!
    else
        env "${envs[@]}" setsid "$top/tools/run-stack.sh" >"$out" 2>&1 &
        leader=$!
    fi
    # running: live messages at the demo client (an event, not a delay)
    if ! wait_log 30 "$out" '"seq":'; then
        echo "$name: no live message"; tail -20 "$out"; kill -KILL -- -"$leader" 2>/dev/null
        return 1
    fi
    local ports=("${RUN_STACK_PORTS[@]}")
    local kb
    kb=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$run_dir/kafka.bootstrap" | head -1)
    [ -n "$kb" ] && ports+=("$kb")
    local procs=() p
    for p in $(descendants "$leader"); do procs+=("$p:$(starttime "$p")"); done
    local n_odin
    n_odin=$(for p in $(descendants "$leader"); do cat "/proc/$p/comm" 2>/dev/null; done |
             grep -c -e '^odin-' -e '^redis-server' || true)
    [ "$n_odin" -ge 7 ] || { echo "$name: only $n_odin stack processes found"; return 1; }
    local script_pid
    if [ "$how" = hangup ]; then
        kill -KILL "$leader"   # the terminal window closes
    elif [ "$how" = shell ]; then
        kill -KILL "$(pgrep -P "$leader" -x bash)"   # the shell on the terminal
    elif [ "$how" = parent ]; then
        kill -KILL "$leader"   # bash -c, standing for make
    else
        script_pid=$(for p in $(descendants "$leader") "$leader"; do
                         grep -q 'run-stack.sh' "/proc/$p/cmdline" 2>/dev/null && echo "$p"; done | head -1)
        kill -KILL "$script_pid"
    fi
    local left=() held=()
    all_gone() {   # sets left and held
        local p
        left=(); held=()
        for p in "${procs[@]}"; do alive "${p%%:*}" "${p#*:}" && left+=("${p%%:*}"); done
        for p in "${ports[@]}"; do port_held "$p" && held+=("$p"); done
        [ ${#left[@]} -eq 0 ] && [ ${#held[@]} -eq 0 ]
    }
    local t0=${EPOCHREALTIME/./} i
    if ! wait_until 5 all_gone; then
        echo "$name: after 5 s, processes left: ${left[*]:-none}; ports held: ${held[*]:-none}"
        for p in ${left[@]+"${left[@]}"}; do ps -o pid=,comm=,args= -p "$p" || true; kill -KILL "$p" 2>/dev/null || true; done
        return 1
    fi
    i=$(( (${EPOCHREALTIME/./} - t0) / 100000 ))
    echo "$name: ${#procs[@]} processes gone and ${#ports[@]} ports free after $((i / 10)).$((i % 10)) s"
    if [ "$how" != kill ]; then
        # the script stopped them in stages, as on Ctrl-C: the shards deregistered
        for s in 1 2 3; do
            grep -q '"msg":"deregistered from redis"' "$run_dir/logs/shard-$s.log" ||
                { echo "$name: shard-$s did not deregister"; return 1; }
        done
    fi
}
rc=0
run_case hangup hangup || rc=1
run_case shell shell || rc=1
run_case parent parent || rc=1
run_case kill kill || rc=1
exit $rc
