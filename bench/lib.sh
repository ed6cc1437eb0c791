# Helpers for bench/run: background processes we own, waiting, /proc readings.
# Sourced, not run. Every process started here is recorded and killed by PID on exit.

# PIDs of everything this run started, in start order.
OWNED_PIDS=()
# PID of the process start_bg started last.
LAST_PID=

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# start_bg LOGFILE CMD [ARG...]: run CMD in the background, output to LOGFILE.
start_bg() {
    local logfile=$1
    shift
    "$@" >"$logfile" 2>&1 &
    LAST_PID=$!
    OWNED_PIDS+=("$LAST_PID")
}

# alive PID: the process exists and has not exited (a zombie has).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# stop_pids PID...: SIGTERM, up to 2 s of grace, then SIGKILL; reap.
stop_pids() {
    local pid deadline
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    deadline=$((SECONDS + 2))
    for pid in "$@"; do
        while alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    forget_pids "$@"
}

# forget_pids PID...: drop reaped processes from OWNED_PIDS (their PIDs may be
# reused by someone else's process, which must never be signalled).
forget_pids() {
    local keep=() pid gone
    for pid in "${OWNED_PIDS[@]}"; do
        for gone in "$@"; do
            [[ $pid == "$gone" ]] && continue 2
        done
        keep+=("$pid")
    done
    OWNED_PIDS=("${keep[@]}")
}

# stop_all: stop everything this run started (the EXIT trap).
stop_all() {
    if ((${#OWNED_PIDS[@]})); then
        stop_pids "${OWNED_PIDS[@]}"
    fi
    OWNED_PIDS=()
}

# show_log FILE: the tail of a process's log, for errors.
show_log() {
    log "---- last lines of $1 ----"
    tail -n 40 "$1" >&2 || true
}

# wait_file FILE PID LOGFILE [TIMEOUT_S]: wait for FILE (an addresses or port file);
# fail with the process's log if it dies or the timeout passes.
wait_file() {
    local file=$1 pid=$2 logfile=$3 timeout=${4:-10}
    local deadline=$((SECONDS + timeout))
    until [[ -s $file ]]; do
        if ! alive "$pid"; then
            show_log "$logfile"
            die "process $pid exited before writing $file"
        fi
        if ((SECONDS >= deadline)); then
            show_log "$logfile"
            die "process $pid did not write $file within ${timeout}s"
        fi
        sleep 0.05
    done
}

# json_get FILE KEY: one string field of a JSON object file.
json_get() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# wait_http_200 URL TIMEOUT_S LOGFILE [HOST [PID...]]: poll until URL answers 200
# (with that Host header, if not empty); fail early if one of the PIDs exits.
wait_http_200() {
    local url=$1 timeout=$2 logfile=$3 host=${4:-}
    shift $(($# < 4 ? $# : 4))
    local deadline=$((SECONDS + timeout)) code pid
    local args=(-s -o /dev/null -w '%{http_code}' --max-time 2)
    [[ -n $host ]] && args+=(-H "Host: $host")
    while true; do
        code=$(curl "${args[@]}" "$url" 2>/dev/null || true)
        [[ $code == 200 ]] && return 0
        for pid in "$@"; do
            if ! alive "$pid"; then
                show_log "$logfile"
                die "process $pid exited while waiting for $url"
            fi
        done
        if ((SECONDS >= deadline)); then
            show_log "$logfile"
            die "$url${host:+ (Host: $host)} did not answer 200 within ${timeout}s (last: ${code:-no answer})"
        fi
        sleep 0.1
    done
}

# join SEP WORD...: the words joined by SEP.
join() {
    local sep=$1
    shift
    local IFS=$sep
    echo "$*"
}

# cpu_ticks PID...: utime + stime of all threads of these processes, in clock ticks.
cpu_ticks() {
    local total=0 pid stat fields
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        # Fields after "pid (comm) ": state is [0], utime [11], stime [12].
        read -r -a fields <<<"${stat##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# peak_rss_kb PID: VmHWM (peak resident set) of a process, in kB.
peak_rss_kb() {
    awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}
