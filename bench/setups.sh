# The setups bench/run compares. Sourced, not run.
#
# A setup is a function `setup_NAME` (dashes in NAME become underscores) that starts
# what it needs on loopback, waits until a request through it succeeds, and sets:
#   TARGET        ip:port the load generator connects to
#   TARGET_HOST   the Host header it sends
#   PROXY_PIDS    the data-path proxies whose CPU and memory are measured
#   PROXY_LABELS  one short name per PROXY_PIDS entry
#   SETUP_PIDS    everything it started (stopped after it is measured)
#   HANDSHAKE_TARGET  (mTLS setups) the server side's TLS listener, with
#                 HANDSHAKE_PID, HANDSHAKE_CERT and HANDSHAKE_KEY: new mTLS
#                 connections are timed against it
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

# write_services DIR COUNT [ANNOTATIONS]: Service files for bench-app,
# bench-client and COUNT - 2 more, so the control plane and the proxies hold a
# realistic config. ANNOTATIONS (a YAML flow mapping) go on every Service.
write_services() {
    local dir=$1 count=$2 annotations=${3:-} i name
    mkdir -p "$dir"
    for ((i = 0; i < count; i++)); do
        case $i in
        0) name=bench-app ;;
        1) name=bench-client ;;
        *) printf -v name 'svc-%03d' "$i" ;;
        esac
        printf 'apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: default%s}\nspec: {ports: [{port: 80, appProtocol: http}]}\n' \
            "$name" "${annotations:+, annotations: $annotations}" >"$dir/$name.yaml"
    done
}

# start_remora_proxy DIR NAME SERVICE XDS [TOKEN_FILE]: start a remora-proxy for
# SERVICE, all listeners on port 0; sets LAST_PID. Its bound addresses are in
# DIR/NAME.json ({"outbound", "inbound", "admin"}). With a token it gets a
# certificate, and proxies with certificates talk mTLS to each other.
start_remora_proxy() {
    local dir=$1 name=$2 service=$3 xds=$4 token=${5:-}
    cat >"$dir/$name.yaml" <<YAML
node_id: $name
service: $service
namespace: default
control_plane: $xds
app: $APP_ADDR
outbound: 127.0.0.1:0
inbound: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: ${PAIR_ACCESS_LOG:-$ACCESS_LOG}
YAML
    [[ -n $token ]] && echo "token_file: $token" >>"$dir/$name.yaml"
    [[ -n ${PAIR_EXTRA:-} ]] && printf '%s\n' "$PAIR_EXTRA" >>"$dir/$name.yaml"
    start_bg "$dir/$name.log" env REMORA_PROXY_THREADS="$PROXY_THREADS" \
        "${PAIR_BIN:-$BIN}/remora-proxy" --bootstrap "$dir/$name.yaml" --addresses-file "$dir/$name.json"
    wait_file "$dir/$name.json" "$LAST_PID" "$dir/$name.log"
}

# (b) client proxy -> server proxy -> app, configured by `remora control` with
# $SERVICES Services. The load hits the client proxy's outbound listener with
# Host: bench-app; the client proxy reaches the server proxy's inbound listener
# over HTTP/2 (plaintext, or mTLS with TLS 1.3 when MODE is mtls).
remora_pair() {
    local mode=$1 dir xds client_pid server_pid control_pid
    local server_token="" client_token=""
    # A folder of its own, so a setup can run twice in one run.
    dir=$(mktemp -d "$WORK/remora-$mode${PAIR_NAME:+-$PAIR_NAME}.XXXX")
    # The plaintext pair has no certificates: its control plane must be told
    # to serve such proxies, and its Services to accept them as endpoints.
    local plaintext=()
    if [[ $mode == plain ]]; then
        plaintext=(--allow-plaintext-proxies)
        write_services "$dir/config" "$SERVICES" "{remora.io/allow-unauthenticated-endpoints: 'true'}"
    else
        write_services "$dir/config" "$SERVICES"
    fi
    start_bg "$dir/control.log" "${PAIR_BIN:-$BIN}/remora" control --config-dir "$dir/config" \
        --data-dir "$dir/data" "${plaintext[@]}" \
        --xds-addr 127.0.0.1:0 --api-addr 127.0.0.1:0 --addresses-file "$dir/control.json"
    control_pid=$LAST_PID
    wait_file "$dir/control.json" "$control_pid" "$dir/control.log"
    xds=$(json_get "$dir/control.json" xds)
    if [[ $mode == mtls ]]; then
        server_token=$dir/server.token client_token=$dir/client.token
        "${PAIR_BIN:-$BIN}/remora" token create --data-dir "$dir/data" --namespace default \
            --service-account bench-app >"$server_token"
        "${PAIR_BIN:-$BIN}/remora" token create --data-dir "$dir/data" --namespace default \
            --service-account bench-client >"$client_token"
    fi

    start_remora_proxy "$dir" server bench-app "$xds" "$server_token"
    server_pid=$LAST_PID
    start_remora_proxy "$dir" client bench-client "$xds" "$client_token"
    client_pid=$LAST_PID

    wait_http_200 "http://$(json_get "$dir/server.json" admin)/ready" 20 "$dir/server.log" "" "$server_pid"
    wait_http_200 "http://$(json_get "$dir/client.json" admin)/ready" 20 "$dir/client.log" "" "$client_pid"
    TARGET=$(json_get "$dir/client.json" outbound)
    TARGET_HOST=bench-app
    # Ready means it has config; a 200 through both means it has the endpoint too.
    wait_http_200 "http://$TARGET/" 20 "$dir/client.log" "$TARGET_HOST" "$client_pid" "$server_pid"
    if [[ $mode == mtls ]] && ! grep -q "mTLS connection accepted" "$dir/server.log"; then
        die "remora-mtls: the server proxy saw no mTLS connection (see $dir/server.log)"
    fi
    PROXY_PIDS=("$client_pid" "$server_pid")
    PROXY_LABELS=(client server)
    SETUP_PIDS=("$client_pid" "$server_pid" "$control_pid")
    HANDSHAKE_TARGET=""
    if [[ $mode == mtls ]]; then
        # A client certificate from the control plane's CA, for new-connection costs.
        make_leaf "$dir" probe bench-client "$dir/data/ca.crt" "$dir/data/ca.key"
        HANDSHAKE_TARGET=$(json_get "$dir/server.json" inbound)
        HANDSHAKE_PID=$server_pid HANDSHAKE_CERT=$dir/probe.crt HANDSHAKE_KEY=$dir/probe.key
    fi
}

setup_remora() { remora_pair plain; }
setup_remora_mtls() { remora_pair mtls; }

# The mTLS pair with all its telemetry off (no per-hop metrics, no access log, no
# traces) and with all of it on (metrics; an access log line per request and
# direction, to a file; a span per hop, every request sampled unless
# BENCH_SAMPLE_RATE says otherwise, exported to an OTLP sink): run the two side
# by side to see what observing costs.
# A/B: the mTLS pair from other binaries (BENCH_BASELINE_BIN, e.g. a release
# build of the commit before a change), run beside remora-mtls in the same run.
setup_remora_mtls_baseline() {
    [[ -x ${BENCH_BASELINE_BIN:-}/remora-proxy ]] ||
        die "remora-mtls-baseline needs BENCH_BASELINE_BIN, a folder with remora and remora-proxy"
    PAIR_NAME=baseline PAIR_BIN=$BENCH_BASELINE_BIN remora_pair mtls
}

setup_remora_mtls_bare() {
    PAIR_NAME=bare PAIR_ACCESS_LOG=off PAIR_EXTRA="metrics: off" remora_pair mtls
}
setup_remora_mtls_observed() {
    local sink_addr=$WORK/otlp-sink.addr sink_pid
    start_bg "$WORK/otlp-sink.log" "$LOAD" --threads 1 otlp-sink --port-file "$sink_addr"
    sink_pid=$LAST_PID
    wait_file "$sink_addr" "$sink_pid" "$WORK/otlp-sink.log"
    PAIR_NAME=observed PAIR_ACCESS_LOG=$WORK/remora-mtls-access.log \
        PAIR_EXTRA=$(printf 'tracing:\n  collector: http://%s\n  sample_rate: %s' \
            "$(cat "$sink_addr")" "${BENCH_SAMPLE_RATE:-1.0}") \
        remora_pair mtls
    SETUP_PIDS+=("$sink_pid")
}

# haproxy_config UPSTREAM [BIND_OPTIONS] [SERVER_OPTIONS]: an HTTP-mode HAProxy
# serving the inherited socket fd 3 (see bind-fd.py) and forwarding to UPSTREAM
# over keep-alive HTTP/1.1 (or what the options say, e.g. TLS and h2).
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
    bind fd@3 ${2:-}
    default_backend be

backend be
    server upstream $1 ${3:-}
CFG
}

# start_haproxy DIR NAME UPSTREAM [BIND_OPTIONS] [SERVER_OPTIONS]: sets LAST_PID;
# its address is in DIR/NAME.addr.
start_haproxy() {
    local dir=$1 name=$2 upstream=$3
    haproxy_config "$upstream" "${4:-}" "${5:-}" >"$dir/$name.cfg"
    # The check needs fd 3 to be a socket too.
    python3 "$BENCH_DIR/bind-fd.py" "$dir/$name.check-addr" -- haproxy -c -q -f "$dir/$name.cfg" ||
        die "invalid HAProxy config $dir/$name.cfg"
    # bind-fd.py execs HAProxy, so LAST_PID is HAProxy's own PID.
    start_bg "$dir/$name.log" python3 "$BENCH_DIR/bind-fd.py" "$dir/$name.addr" -- \
        haproxy -db -f "$dir/$name.cfg"
    wait_file "$dir/$name.addr" "$LAST_PID" "$dir/$name.log"
}

# (c) front HAProxy -> back HAProxy -> app, keep-alive HTTP/1.1 on every hop.
# haproxy_pair MODE: front HAProxy -> back HAProxy -> app. plain: keep-alive
# HTTP/1.1 on every hop. mtls: between the two, TLS 1.3 with client certificates
# from a CA made here and HTTP/2 (as between remora proxies).
haproxy_pair() {
    local mode=$1 dir=$WORK/haproxy-$1 back_pid front_pid bind_opts="" server_opts=""
    mkdir -p "$dir"
    if [[ $mode == mtls ]]; then
        make_mesh_certs "$dir"
        bind_opts="ssl crt $dir/server.pem ca-file $dir/ca.crt verify required alpn h2 ssl-min-ver TLSv1.3"
        server_opts="ssl crt $dir/client.pem ca-file $dir/ca.crt verify required alpn h2 ssl-min-ver TLSv1.3"
    fi
    start_haproxy "$dir" back "$APP_ADDR" "$bind_opts"
    back_pid=$LAST_PID
    start_haproxy "$dir" front "$(cat "$dir/back.addr")" "" "$server_opts"
    front_pid=$LAST_PID
    TARGET=$(cat "$dir/front.addr")
    TARGET_HOST=bench-app
    wait_http_200 "http://$TARGET/" 10 "$dir/front.log" "$TARGET_HOST" "$front_pid" "$back_pid"
    PROXY_PIDS=("$front_pid" "$back_pid")
    PROXY_LABELS=(front back)
    SETUP_PIDS=("$front_pid" "$back_pid")
    HANDSHAKE_TARGET=""
    if [[ $mode == mtls ]]; then
        HANDSHAKE_TARGET=$(cat "$dir/back.addr")
        HANDSHAKE_PID=$back_pid HANDSHAKE_CERT=$dir/client.crt HANDSHAKE_KEY=$dir/client.key
    fi
}

# make_leaf DIR NAME SERVICE_ACCOUNT CA_CRT CA_KEY: DIR/NAME.{key,crt,pem}, an
# ECDSA P-256 certificate for spiffe://cluster.local/ns/default/sa/SERVICE_ACCOUNT
# (NAME.pem is cert + key in one file, as HAProxy wants it).
make_leaf() {
    local dir=$1 name=$2 sa=$3 ca_crt=$4 ca_key=$5
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$sa" \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
    printf 'subjectAltName=URI:spiffe://cluster.local/ns/default/sa/%s\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$sa" >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$ca_crt" -CAkey "$ca_key" \
        -CAcreateserial -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
    cat "$dir/$name.crt" "$dir/$name.key" >"$dir/$name.pem"
}

# make_mesh_certs DIR: an ECDSA P-256 CA and SPIFFE-named server and client
# certificates signed by it.
make_mesh_certs() {
    local dir=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=bench-ca -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    make_leaf "$dir" server bench-app "$dir/ca.crt" "$dir/ca.key"
    make_leaf "$dir" client bench-client "$dir/ca.crt" "$dir/ca.key"
}

setup_haproxy() { haproxy_pair plain; }
setup_haproxy_mtls() { haproxy_pair mtls; }
