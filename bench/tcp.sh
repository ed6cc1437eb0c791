# The opaque TCP comparison bench/run makes with --tcp. Sourced, not run.
#
# One redis-server; in front of it, side by side:
#   tcp-direct        redis-benchmark straight to Redis
#   tcp-remora-mtls   client remora-proxy (bootstrap `upstreams`) -> server
#                     remora-proxy (mesh mTLS, TLS 1.3) -> Redis
#   tcp-haproxy-tls   front HAProxy (mode tcp) -> back HAProxy (TLS 1.3 with
#                     client certificates) -> Redis
# and two loads through each, measured with the proxies' CPU:
#   small   SET and GET of 3-byte values from 50 connections (many small
#           request/response exchanges): ops/s and CPU per 1000 ops
#   bulk    SET of 256 KiB values from 4 connections (a bulk stream): MB/s and
#           CPU per GB
# Uses start_bg, wait_file, json_get, cpu_ticks, peak_rss_kb, make_mesh_certs,
# write_services, start_remora_proxy, start_haproxy (bench/lib.sh, setups.sh).

TCP_SMALL_REQUESTS=${BENCH_TCP_SMALL_REQUESTS:-200000}
TCP_BULK_REQUESTS=${BENCH_TCP_BULK_REQUESTS:-4000}
TCP_BULK_SIZE=${BENCH_TCP_BULK_SIZE:-262144}
TCP_SETUPS=${BENCH_TCP_SETUPS:-tcp-direct tcp-remora-mtls tcp-haproxy-tls}

ensure_redis() {
    if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
        log "installing redis (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
    fi
}

# A port nothing listens on: redis-server cannot bind 0 and say which it got.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_redis() {
    local port
    port=$(free_port)
    start_bg "$WORK/redis.log" redis-server --bind 127.0.0.1 --port "$port" --save '' \
        --appendonly no --protected-mode no
    REDIS_PID=$LAST_PID
    REDIS_ADDR=127.0.0.1:$port
    local deadline=$((SECONDS + 10))
    until redis-cli -p "$port" PING 2>/dev/null | grep -q PONG; do
        alive "$REDIS_PID" && ((SECONDS < deadline)) || { show_log "$WORK/redis.log"; die "redis-server did not start"; }
        sleep 0.05
    done
    log "redis on $REDIS_ADDR (pid $REDIS_PID)"
}

setup_tcp_direct() {
    TCP_TARGET=$REDIS_ADDR
    PROXY_PIDS=() PROXY_LABELS=() SETUP_PIDS=()
}

setup_tcp_remora_mtls() {
    local dir xds control_pid server_pid client_pid
    dir=$(mktemp -d "$WORK/tcp-remora.XXXX")
    write_services "$dir/config" "$SERVICES"
    printf 'apiVersion: v1\nkind: Service\nmetadata: {name: redis, namespace: default}\nspec: {ports: [{port: 6379, appProtocol: redis}]}\n' \
        >"$dir/config/redis.yaml"
    start_bg "$dir/control.log" "$BIN/remora" control --config-dir "$dir/config" \
        --data-dir "$dir/data" --xds-addr 127.0.0.1:0 --api-addr 127.0.0.1:0 \
        --addresses-file "$dir/control.json"
    control_pid=$LAST_PID
    wait_file "$dir/control.json" "$control_pid" "$dir/control.log"
    xds=$(json_get "$dir/control.json" xds)
    "$BIN/remora" token create --data-dir "$dir/data" --namespace default \
        --service-account redis >"$dir/server.token"
    "$BIN/remora" token create --data-dir "$dir/data" --namespace default \
        --service-account bench-client >"$dir/client.token"
    PAIR_EXTRA="app_ports: {6379: \"$REDIS_ADDR\"}" \
        start_remora_proxy "$dir" server redis "$xds" "$dir/server.token"
    server_pid=$LAST_PID
    PAIR_EXTRA='upstreams: [{service: redis, port: 6379, listen: "127.0.0.1:0"}]' \
        start_remora_proxy "$dir" client bench-client "$xds" "$dir/client.token"
    client_pid=$LAST_PID
    TCP_TARGET=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["upstreams"][0])' "$dir/client.json")
    local deadline=$((SECONDS + 20))
    until redis-cli -h "${TCP_TARGET%:*}" -p "${TCP_TARGET##*:}" PING 2>/dev/null | grep -q PONG; do
        ((SECONDS < deadline)) || { show_log "$dir/client.log"; die "tcp-remora-mtls: no PONG through the pair"; }
        sleep 0.1
    done
    grep -q '"protocol":"tcp"' "$dir/client.log" 2>/dev/null || true
    PROXY_PIDS=("$client_pid" "$server_pid")
    PROXY_LABELS=(client server)
    SETUP_PIDS=("$client_pid" "$server_pid" "$control_pid")
}

# tcp_haproxy_config UPSTREAM [BIND_OPTIONS] [SERVER_OPTIONS]: mode tcp.
tcp_haproxy_config() {
    cat <<CFG
global
    nbthread $PROXY_THREADS
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend fe
    bind fd@3 ${2:-}
    default_backend be

backend be
    server upstream $1 ${3:-}
CFG
}

setup_tcp_haproxy_tls() {
    local dir=$WORK/tcp-haproxy back_pid front_pid name cfg
    mkdir -p "$dir"
    make_mesh_certs "$dir"
    local bind_opts="ssl crt $dir/server.pem ca-file $dir/ca.crt verify required ssl-min-ver TLSv1.3"
    local server_opts="ssl crt $dir/client.pem ca-file $dir/ca.crt verify required ssl-min-ver TLSv1.3"
    for name in back front; do
        if [[ $name == back ]]; then
            tcp_haproxy_config "$REDIS_ADDR" "$bind_opts" >"$dir/$name.cfg"
        else
            tcp_haproxy_config "$(cat "$dir/back.addr")" "" "$server_opts" >"$dir/$name.cfg"
        fi
        start_bg "$dir/$name.log" python3 "$BENCH_DIR/bind-fd.py" "$dir/$name.addr" -- \
            haproxy -db -f "$dir/$name.cfg"
        wait_file "$dir/$name.addr" "$LAST_PID" "$dir/$name.log"
        [[ $name == back ]] && back_pid=$LAST_PID || front_pid=$LAST_PID
    done
    TCP_TARGET=$(cat "$dir/front.addr")
    redis-cli -h "${TCP_TARGET%:*}" -p "${TCP_TARGET##*:}" PING | grep -q PONG ||
        die "tcp-haproxy-tls: no PONG through the pair"
    PROXY_PIDS=("$front_pid" "$back_pid")
    PROXY_LABELS=(front back)
    SETUP_PIDS=("$front_pid" "$back_pid")
}

# tcp_measure SETUP PHASE N REDIS-BENCHMARK-ARGS... (N requests per test): one load; appends a JSON line
# with the operations per second, the bytes per operation and the proxies' CPU.
tcp_measure() {
    local setup=$1 phase=$2 n=$3 before=() i out
    shift 3
    for i in "${!PROXY_PIDS[@]}"; do before+=("$(cpu_ticks "${PROXY_PIDS[i]}")"); done
    local start end
    start=$(date +%s.%N)
    out=$(redis-benchmark -h "${TCP_TARGET%:*}" -p "${TCP_TARGET##*:}" --csv -n "$n" "$@" 2>&1) ||
        die "$setup: redis-benchmark failed: $out"
    end=$(date +%s.%N)
    local ticks=0 rss=()
    for i in "${!PROXY_PIDS[@]}"; do
        ticks=$((ticks + $(cpu_ticks "${PROXY_PIDS[i]}") - before[i]))
        rss+=("$(peak_rss_kb "${PROXY_PIDS[i]}")")
    done
    python3 - "$setup" "$phase" "$start" "$end" "$ticks" "$(getconf CLK_TCK)" "${rss[*]:-}" "$TCP_BULK_SIZE" "$out" "$n" >>"$WORK/tcp-results.jsonl" <<'PY'
import csv, io, json, sys
setup, phase, start, end, ticks, hz, rss, bulk, out, n = sys.argv[1:]
rows = [r for r in csv.reader(io.StringIO(out)) if len(r) > 1 and r[0] != "test"]
# Each test runs n requests; its rps is over its own run.
ops = sum(float(r[1]) for r in rows) / max(len(rows), 1)
print(json.dumps({
    "setup": setup, "phase": phase, "ops_per_s": ops,
    "operations": int(n) * len(rows),
    "seconds": float(end) - float(start), "cpu_s": int(ticks) / int(hz),
    "value_bytes": int(bulk) if phase == "bulk" else 3,
    "peak_rss_kb": [int(x) for x in rss.split()] if rss else [],
    "raw": rows,
}))
PY
}

run_tcp() {
    ensure_redis
    start_redis
    local setup fn
    for setup in $TCP_SETUPS; do
        fn=setup_${setup//-/_}
        declare -F "$fn" >/dev/null || die "unknown TCP setup $setup"
        log "$setup: starting"
        "$fn"
        log "$setup: small load ($TCP_SMALL_REQUESTS requests x SET/GET, 50 connections)"
        tcp_measure "$setup" small "$TCP_SMALL_REQUESTS" -t set,get -c 50 -d 3
        log "$setup: bulk load ($TCP_BULK_REQUESTS SETs of $TCP_BULK_SIZE bytes, 4 connections)"
        tcp_measure "$setup" bulk "$TCP_BULK_REQUESTS" -t set -c 4 -d "$TCP_BULK_SIZE"
        if ((${#SETUP_PIDS[@]})); then stop_pids "${SETUP_PIDS[@]}"; fi
    done
    python3 "$BENCH_DIR/tcp_table.py" "$WORK/tcp-results.jsonl"
    cp "$WORK/tcp-results.jsonl" "$BENCH_DIR/last-tcp-results.jsonl"
}
