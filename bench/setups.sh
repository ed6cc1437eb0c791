# The setups bench/run compares. Sourced, not run.
#
# A setup is a function `setup_NAME` (dashes in NAME become underscores) that starts
# what it needs on loopback, waits until a request through it succeeds, and sets:
#   TARGET        ip:port the load generator connects to
#   TARGET_HOST   the Host header it sends
#   PROXY_PIDS    the data-path proxies whose CPU and memory are measured
#   PROXY_LABELS  one short name per PROXY_PIDS entry
#   SETUP_PIDS    everything it started (stopped after it is measured)
# Uses: WORK, BIN, APP_ADDR, APP_LOG, PROXY_THREADS, SERVICES (see bench/run).
# To add a setup (e.g. the mTLS variants), add a function here and its name to
# BENCH_SETUPS.

# (a) the app alone.
setup_direct() {
    TARGET=$APP_ADDR
    TARGET_HOST=bench-app
    PROXY_PIDS=()
    PROXY_LABELS=()
    SETUP_PIDS=()
    wait_http_200 "http://$TARGET/" 10 "$APP_LOG" "$TARGET_HOST" "$APP_PID"
}

# write_services DIR COUNT: Service files for bench-app, bench-client and
# COUNT - 2 more, so the control plane and the proxies hold a realistic config.
write_services() {
    local dir=$1 count=$2 i name
    mkdir -p "$dir"
    for ((i = 0; i < count; i++)); do
        case $i in
        0) name=bench-app ;;
        1) name=bench-client ;;
        *) printf -v name 'svc-%03d' "$i" ;;
        esac
        printf 'apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: default}\nspec: {ports: [{port: 80, appProtocol: http}]}\n' \
            "$name" >"$dir/$name.yaml"
    done
}

# start_remora_proxy NAME SERVICE XDS: start a remora-proxy for SERVICE, all
# listeners on port 0; sets LAST_PID. Its bound addresses are in
# $WORK/remora/NAME.json ({"outbound", "inbound", "admin"}).
start_remora_proxy() {
    local name=$1 service=$2 xds=$3 dir=$WORK/remora
    cat >"$dir/$name.yaml" <<YAML
node_id: $name
service: $service
namespace: default
control_plane: $xds
app: $APP_ADDR
outbound: 127.0.0.1:0
inbound: 127.0.0.1:0
admin: 127.0.0.1:0
YAML
    start_bg "$dir/$name.log" env REMORA_PROXY_THREADS="$PROXY_THREADS" \
        "$BIN/remora-proxy" --bootstrap "$dir/$name.yaml" --addresses-file "$dir/$name.json"
    wait_file "$dir/$name.json" "$LAST_PID" "$dir/$name.log"
}

# (b) client proxy -> server proxy -> app, configured by `remora control` with
# $SERVICES Services. The load hits the client proxy's outbound listener with
# Host: bench-app; the client proxy reaches the server proxy's inbound listener
# over HTTP/2.
setup_remora() {
    local dir=$WORK/remora xds client_pid server_pid control_pid
    mkdir -p "$dir"
    write_services "$dir/config" "$SERVICES"
    start_bg "$dir/control.log" "$BIN/remora" control --config-dir "$dir/config" \
        --xds-addr 127.0.0.1:0 --api-addr 127.0.0.1:0 --addresses-file "$dir/control.json"
    control_pid=$LAST_PID
    wait_file "$dir/control.json" "$control_pid" "$dir/control.log"
    xds=$(json_get "$dir/control.json" xds)

    start_remora_proxy server bench-app "$xds"
    server_pid=$LAST_PID
    start_remora_proxy client bench-client "$xds"
    client_pid=$LAST_PID

    wait_http_200 "http://$(json_get "$dir/server.json" admin)/ready" 20 "$dir/server.log" "" "$server_pid"
    wait_http_200 "http://$(json_get "$dir/client.json" admin)/ready" 20 "$dir/client.log" "" "$client_pid"
    TARGET=$(json_get "$dir/client.json" outbound)
    TARGET_HOST=bench-app
    # Ready means it has config; a 200 through both means it has the endpoint too.
    wait_http_200 "http://$TARGET/" 20 "$dir/client.log" "$TARGET_HOST" "$client_pid" "$server_pid"
    PROXY_PIDS=("$client_pid" "$server_pid")
    PROXY_LABELS=(client server)
    SETUP_PIDS=("$client_pid" "$server_pid" "$control_pid")
}

# haproxy_config UPSTREAM: an HTTP-mode HAProxy serving the inherited socket fd 3
# (see bind-fd.py) and forwarding to UPSTREAM over keep-alive HTTP/1.1.
haproxy_config() {
    cat <<CFG
global
    nbthread $PROXY_THREADS
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend fe
    bind fd@3
    default_backend be

backend be
    server upstream $1
CFG
}

# start_haproxy NAME UPSTREAM: sets LAST_PID; its address is in $WORK/haproxy/NAME.addr.
start_haproxy() {
    local name=$1 upstream=$2 dir=$WORK/haproxy
    haproxy_config "$upstream" >"$dir/$name.cfg"
    # The check needs fd 3 to be a socket too.
    python3 "$BENCH_DIR/bind-fd.py" "$dir/$name.check-addr" -- haproxy -c -q -f "$dir/$name.cfg" ||
        die "invalid HAProxy config $dir/$name.cfg"
    # bind-fd.py execs HAProxy, so LAST_PID is HAProxy's own PID.
    start_bg "$dir/$name.log" python3 "$BENCH_DIR/bind-fd.py" "$dir/$name.addr" -- \
        haproxy -db -f "$dir/$name.cfg"
    wait_file "$dir/$name.addr" "$LAST_PID" "$dir/$name.log"
}

# (c) front HAProxy -> back HAProxy -> app, keep-alive HTTP/1.1 on every hop.
setup_haproxy() {
    local dir=$WORK/haproxy back_pid front_pid
    mkdir -p "$dir"
    start_haproxy back "$APP_ADDR"
    back_pid=$LAST_PID
    start_haproxy front "$(cat "$dir/back.addr")"
    front_pid=$LAST_PID
    TARGET=$(cat "$dir/front.addr")
    TARGET_HOST=bench-app
    wait_http_200 "http://$TARGET/" 10 "$dir/front.log" "$TARGET_HOST" "$front_pid" "$back_pid"
    PROXY_PIDS=("$front_pid" "$back_pid")
    PROXY_LABELS=(front back)
    SETUP_PIDS=("$front_pid" "$back_pid")
}
