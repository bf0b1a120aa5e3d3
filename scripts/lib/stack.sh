# scripts/lib/stack.sh -- start and stop the servers of one Magpie stack on loopback.
# Sourced by scripts/dev. A stack lives entirely in one run directory ($RUN): configs, data, logs, pid
# files. Everything started is recorded in a pid file under $RUN, and stop_stack stops exactly those.
#
# Layout of $RUN:
#   dev.env            the stack's ports (edit to move them; created on first start)
#   secret             the generated auth.secret, API key and notify.secret
#   magpie.conf        rendered from dev.env on every start (read by every magpie binary)
#   redis/             redis.conf, data/, redis.pid, redis.log
#   redis-replica/     the same for the replica (redis-replica2/ too with MAGPIE_REDIS_REPLICAS=2), and
#                      sentinel-1..3/ sentinel.conf, sentinel.pid, sentinel.log (only with 'up --redis
#                      sentinel': README, "Redis Sentinel")
#   cluster-1..6/      (1..9 with MAGPIE_REDIS_REPLICAS=2) redis.conf, data/ (with the cluster's nodes.conf), redis.pid, redis.log of each
#                      node (only with 'up --redis cluster': README, "Redis Cluster"; then no redis/)
#   mariadb/           data/, mysqld.sock, mysqld.pid, error.log
#   nginx/             nginx.conf, magpie-site.conf, nginx.pid, access.log, error.log, tmp/
#   logs/              one log per magpie daemon, sms.txt (the SMS sink), sanitizer reports
#   pids/              one pid file per magpie daemon

# ---- small helpers -------------------------------------------------------------------------------------

say() { printf '%s\n' "$*"; }
die() { printf 'dev: %s\n' "$*" >&2; exit 1; }

# A free TCP port on 127.0.0.1, below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768..
# on Linux): a port in that range can become the local end of any outgoing connection while the daemon that
# listens on it restarts, and the restart then fails to bind. Ports already handed out for this stack
# (listed in $RUN/.ports while dev.env is written) are not handed out twice.
free_port() {
    /usr/bin/python3 - "$RUN/.ports" <<'EOF'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
try:
    taken = set(open(sys.argv[1]).read().split())
except OSError:
    taken = set()
for _ in range(1000):
    port = random.randrange(10000, low) if low > 11000 else 0
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        port = s.getsockname()[1]
    except OSError:
        continue
    finally:
        s.close()
    if str(port) not in taken:
        with open(sys.argv[1], "a") as f:
            f.write(f"{port}\n")
        print(port)
        sys.exit(0)
sys.exit("no free port")
EOF
}

port_in_use() {
    /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    sys.exit(0)
except OSError:
    sys.exit(1)
EOF
}

# Is the process in pid file $1 alive, and is it the program whose name contains $2?
# (A pid can be reused by an unrelated process after ours died; never signal that one.)
pid_alive() {
    local file=$1 name=$2 pid
    [ -s "$file" ] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    case "$pid" in ''|*[!0-9]*) return 1 ;; esac
    [ -d "/proc/$pid" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

# Wait up to $2 seconds for the command "$3..." to succeed; $1 names it in the error.
wait_for() {
    local what=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    die "$what did not come up within ${secs}s (see the logs: scripts/dev logs)"
}

# Send SIGTERM to the process of pid file $1 (if it is program $2), wait up to $3 s, then SIGKILL.
stop_pidfile() {
    local file=$1 name=$2 secs=${3:-10} pid i
    if ! pid_alive "$file" "$name"; then
        rm -f "$file"
        return 0
    fi
    pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
        say "  $name (pid $pid) did not stop in ${secs}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$file"
}

# ---- ports and configuration ---------------------------------------------------------------------------

# Create $RUN/dev.env once. MAGPIE_DEV_PORTS=free picks free ports (the test stack); otherwise the fixed
# defaults below, each overridable from the environment. They avoid the system services' usual ports.
write_dev_env() {
    [ -f "$RUN/dev.env" ] && return 0
    mkdir -p "$RUN"
    if [ "${MAGPIE_DEV_PORTS:-}" = free ]; then
        cat >"$RUN/dev.env" <<EOF
# Ports of this stack (picked free by scripts/dev). Edit and run 'scripts/dev up' again to move them.
NGINX_PORT=$(free_port)
REDIS_PORT=$(free_port)
MYSQL_PORT=$(free_port)
HTTP_PORT=$(free_port)
PUSH_PORTS="$(free_port) $(free_port)"
PUSH_METRICS_PORTS="$(free_port) $(free_port)"
PERSIST_METRICS_PORT=$(free_port)
EOF
        add_notify_ports
        rm -f "$RUN/.ports"
    else
        cat >"$RUN/dev.env" <<EOF
# Ports of the dev stack. Edit and run 'scripts/dev up' again to move them.
NGINX_PORT=${DEV_NGINX_PORT:-8080}           # the site: web client, API, WebSockets
REDIS_PORT=${DEV_REDIS_PORT:-6390}
MYSQL_PORT=${DEV_MYSQL_PORT:-3316}
HTTP_PORT=${DEV_HTTP_PORT:-8081}            # magpie-http's standalone front-end (without nginx)
PUSH_PORTS="${DEV_PUSH_PORTS:-9001 9002}"       # one magpie-push node per port
PUSH_METRICS_PORTS="${DEV_PUSH_METRICS_PORTS:-9101 9102}"
PERSIST_METRICS_PORT=${DEV_PERSIST_METRICS_PORT:-9201}
EOF
        add_notify_ports
    fi
}

# magpie-notify's ports, appended to dev.env (also to one written before magpie-notify existed).
# NOTIFY_PORT is where the webhook is sent: nothing listens there unless you start a receiver
# (README, "Offline notifications").
add_notify_ports() {
    grep -q '^NOTIFY_PORT=' "$RUN/dev.env" && return 0
    if [ "${MAGPIE_DEV_PORTS:-}" = free ] || grep -q 'picked free' "$RUN/dev.env"; then
        printf 'NOTIFY_PORT=%s\nNOTIFY_METRICS_PORT=%s\n' "$(free_port)" "$(free_port)" >>"$RUN/dev.env"
    else
        printf 'NOTIFY_PORT=%s            # the webhook receiver magpie-notify posts to\nNOTIFY_METRICS_PORT=%s\n' \
            "${DEV_NOTIFY_PORT:-9300}" "${DEV_NOTIFY_METRICS_PORT:-9301}" >>"$RUN/dev.env"
    fi
}

# The Redis setup: MAGPIE_REDIS_MODE (from 'up --redis MODE') is recorded in dev.env, so 'down', 'status'
# and a later 'up' without --redis see the same stack. single (default): one Redis at REDIS_PORT.
# sentinel: a master (first at REDIS_PORT), a replica (REDIS_REPLICA_PORT) and three sentinels
# (SENTINEL_PORTS); which of the two is master is the sentinels' business after a failover.
# cluster: six nodes of a Redis Cluster (CLUSTER_PORTS, their cluster bus on CLUSTER_BUS_PORTS), three
# masters and a replica each; which is master is the cluster's business after a failover.
# slotcheck: one Redis at REDIS_PORT, cluster-enabled and owning every slot (start_redis_slotcheck).
# MAGPIE_REDIS_REPLICAS (1 or 2; sentinel and cluster only; first 'up' of a run directory, then REDIS_REPLICAS
# in dev.env): replicas per master. 1 is the issue's topology; with 2 (Sentinel: REDIS_REPLICA2_PORT too;
# cluster: 9 nodes) a killed master leaves its other replica to the promoted one, so with
# redis.min_replicas_acked = 1 acks wait only for the promotion, not for the killed node's return and
# full resync (bench/README, "Failover gap").
add_redis_mode() {
    if [ -n "${MAGPIE_REDIS_MODE:-}" ]; then
        case "$MAGPIE_REDIS_MODE" in
        single | sentinel | cluster | slotcheck) ;;
        *) die "--redis must be single, sentinel, cluster or slotcheck, not '$MAGPIE_REDIS_MODE'" ;;
        esac
        sed -i '/^REDIS_MODE=/d' "$RUN/dev.env"
        echo "REDIS_MODE=$MAGPIE_REDIS_MODE" >>"$RUN/dev.env"
    fi
    add_redis_replicas
    add_cluster_ports
    grep -q '^REDIS_MODE=sentinel' "$RUN/dev.env" || return 0
    local two=""
    grep -q '^REDIS_REPLICAS=2' "$RUN/dev.env" && two=1
    grep -q '^SENTINEL_PORTS=' "$RUN/dev.env" && return 0
    if [ "${MAGPIE_DEV_PORTS:-}" = free ] || grep -q 'picked free' "$RUN/dev.env"; then
        printf 'REDIS_REPLICA_PORT=%s\nSENTINEL_PORTS="%s %s %s"\n' "$(free_port)" "$(free_port)" \
            "$(free_port)" "$(free_port)" >>"$RUN/dev.env"
        [ -z "$two" ] || printf 'REDIS_REPLICA2_PORT=%s\n' "$(free_port)" >>"$RUN/dev.env"
        rm -f "$RUN/.ports"
    else
        printf 'REDIS_REPLICA_PORT=%s\nSENTINEL_PORTS="%s"\n' "${DEV_REDIS_REPLICA_PORT:-6391}" \
            "${DEV_SENTINEL_PORTS:-26390 26391 26392}" >>"$RUN/dev.env"
        [ -z "$two" ] || printf 'REDIS_REPLICA2_PORT=%s\n' "${DEV_REDIS_REPLICA2_PORT:-6392}" >>"$RUN/dev.env"
    fi
}

# REDIS_REPLICAS in dev.env, from MAGPIE_REDIS_REPLICAS on the first 'up' of a run directory (its nodes and
# their ports are made for that count once; another count needs a new run directory).
add_redis_replicas() {
    local want=${MAGPIE_REDIS_REPLICAS:-} have
    case "$want" in
    "" | 1 | 2) ;;
    *) die "MAGPIE_REDIS_REPLICAS must be 1 or 2, not '$want'" ;;
    esac
    have=$(sed -n 's/^REDIS_REPLICAS=//p' "$RUN/dev.env" | tail -1)
    if [ -z "$have" ]; then
        # The ports of a sentinel or cluster stack are written once: a count that comes after them is too late.
        if [ -n "$want" ] && [ "$want" != 1 ] &&
            grep -q '^SENTINEL_PORTS=\|^CLUSTER_PORTS=' "$RUN/dev.env"; then
            die "MAGPIE_REDIS_REPLICAS=$want: the stack in $RUN was made with 1 replica per master (use a new MAGPIE_RUN)"
        fi
        echo "REDIS_REPLICAS=${want:-1}" >>"$RUN/dev.env"
    elif [ -n "$want" ] && [ "$want" != "$have" ]; then
        die "MAGPIE_REDIS_REPLICAS=$want: the stack in $RUN was made with $have replica(s) per master (use a new MAGPIE_RUN)"
    fi
}

# 3 masters x (1 + REDIS_REPLICAS) nodes: 6, or 9 with MAGPIE_REDIS_REPLICAS=2.
cluster_node_count() { echo $((3 * (1 + $(sed -n 's/^REDIS_REPLICAS=//p' "$RUN/dev.env" | tail -1 | grep . || echo 1)))); }

add_cluster_ports() {
    grep -q '^REDIS_MODE=cluster' "$RUN/dev.env" || return 0
    grep -q '^CLUSTER_PORTS=' "$RUN/dev.env" && return 0
    local n i ports="" bus=""
    n=$(cluster_node_count)
    if [ "${MAGPIE_DEV_PORTS:-}" = free ] || grep -q 'picked free' "$RUN/dev.env"; then
        for ((i = 0; i < n; i++)); do ports="${ports:+$ports }$(free_port)"; done
        for ((i = 0; i < n; i++)); do bus="${bus:+$bus }$(free_port)"; done
        printf 'CLUSTER_PORTS="%s"\nCLUSTER_BUS_PORTS="%s"\n' "$ports" "$bus" >>"$RUN/dev.env"
        rm -f "$RUN/.ports"
    else
        for ((i = 0; i < n; i++)); do
            ports="${ports:+$ports }$((6400 + i))"
            bus="${bus:+$bus }$((16400 + i))"
        done
        printf 'CLUSTER_PORTS="%s"\nCLUSTER_BUS_PORTS="%s"\n' "${DEV_CLUSTER_PORTS:-$ports}" \
            "${DEV_CLUSTER_BUS_PORTS:-$bus}" >>"$RUN/dev.env"
    fi
}

load_dev_env() {
    write_dev_env
    add_notify_ports
    add_redis_mode
    # shellcheck disable=SC1091
    . "$RUN/dev.env"
    REDIS_MODE=${REDIS_MODE:-single}
    read -r -a SENTINEL_PORT_LIST <<<"${SENTINEL_PORTS:-}"
    read -r -a CLUSTER_PORT_LIST <<<"${CLUSTER_PORTS:-}"
    read -r -a CLUSTER_BUS_PORT_LIST <<<"${CLUSTER_BUS_PORTS:-}"
    read -r -a PUSH_PORT_LIST <<<"$PUSH_PORTS"
    read -r -a PUSH_METRICS_PORT_LIST <<<"$PUSH_METRICS_PORTS"
    [ "${#PUSH_PORT_LIST[@]}" -eq "${#PUSH_METRICS_PORT_LIST[@]}" ] ||
        die "$RUN/dev.env: PUSH_PORTS and PUSH_METRICS_PORTS must list as many ports"
}

# The secret and API key are generated once per stack and kept (tokens stay valid across restarts).
ensure_secrets() {
    if [ ! -s "$RUN/secret" ]; then
        umask 077
        {
            echo "SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)"
            echo "API_KEY=$(head -c 32 /dev/urandom | base64 | tr -d '\n/+=' | head -c 32)"
            echo "DB_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=' | head -c 24)"
        } >"$RUN/secret"
        umask 022
    fi
    grep -q '^NOTIFY_SECRET=' "$RUN/secret" ||
        echo "NOTIFY_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '\n/+=' | head -c 32)" >>"$RUN/secret"
    # shellcheck disable=SC1091
    . "$RUN/secret"
}

write_magpie_conf() {
    local origins="http://127.0.0.1:$NGINX_PORT, http://localhost:$NGINX_PORT"
    mkdir -p "$RUN/logs" "$RUN/pids"
    cat >"$RUN/magpie.conf" <<EOF
# Generated by scripts/dev from $RUN/dev.env on every start; edit dev.env, not this file.
# Every key is documented in magpie.conf.example.

[log]
level = ${MAGPIE_DEV_LOG_LEVEL:-info}

[auth]
secret = $SECRET
api_keys = $API_KEY

[redis]
host = 127.0.0.1
port = $REDIS_PORT
stream_shards = ${MAGPIE_STREAM_SHARDS:-1}
$(sentinel_conf_lines)
$(cluster_conf_lines)
$(slotcheck_conf_lines)

[mysql]
host = 127.0.0.1
port = $MYSQL_PORT
user = magpie
password = $DB_PASSWORD
database = magpie

[http]
listen = 127.0.0.1:$HTTP_PORT
fcgi_socket = $RUN/http.sock
fcgi_socket_mode = 0666
public_url = http://127.0.0.1:$NGINX_PORT
enable_test_token = yes

[sms]
sink_file = $RUN/logs/sms.txt

[push]
advertise_url = ws://127.0.0.1:$NGINX_PORT/ws
advertise_room_url = ws://127.0.0.1:$NGINX_PORT/room
allowed_origins = $origins

[persist]
metrics_listen = 127.0.0.1:$PERSIST_METRICS_PORT

[notify]
webhook_url = http://127.0.0.1:$NOTIFY_PORT/magpie-notify
secret = $NOTIFY_SECRET
metrics_listen = 127.0.0.1:$NOTIFY_METRICS_PORT
EOF
}

# ---- Redis ---------------------------------------------------------------------------------------------

# The master's name in the dev sentinels' configuration.
SENTINEL_MASTER=magpie

# magpie.conf's [redis] lines for the Sentinel setup (none for one Redis). With one replica, a master that
# died leaves none until it comes back as a replica: acks wait for it (README, "Redis Sentinel").
sentinel_conf_lines() {
    [ "$REDIS_MODE" = sentinel ] || return 0
    local p list=""
    for p in "${SENTINEL_PORT_LIST[@]}"; do list="${list:+$list, }127.0.0.1:$p"; done
    printf 'sentinels = %s\nmaster_name = %s\nmin_replicas_acked = 1\n' "$list" "$SENTINEL_MASTER"
}

# magpie.conf's [redis] lines for the cluster (none otherwise): every node as a seed.
cluster_conf_lines() {
    [ "$REDIS_MODE" = cluster ] || return 0
    local p list=""
    for p in "${CLUSTER_PORT_LIST[@]}"; do list="${list:+$list, }127.0.0.1:$p"; done
    printf 'cluster = %s\n' "$list"
}

redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
# PONG only once Redis serves: while it loads its AOF it answers every command (PING too) with LOADING.
redis_ready() { [ "$(redis_cli ping 2>/dev/null)" = PONG ]; }

start_redis() {
    local dir=$RUN/redis
    if [ "$REDIS_MODE" = sentinel ]; then
        start_redis_sentinel
        return 0
    fi
    if [ "$REDIS_MODE" = cluster ]; then
        start_redis_cluster
        return 0
    fi
    if [ "$REDIS_MODE" = slotcheck ]; then
        start_redis_slotcheck
        return 0
    fi
    if pid_alive "$dir/redis.pid" redis-server; then
        say "  redis      already running (pid $(cat "$dir/redis.pid"))"
        return 0
    fi
    port_in_use "$REDIS_PORT" && die "port $REDIS_PORT (REDIS_PORT in $RUN/dev.env) is taken by another program"
    mkdir -p "$dir/data"
    redis_conf "$dir" "$REDIS_PORT" >"$dir/redis.conf"
    redis-server "$dir/redis.conf"
    wait_for redis 120 redis_ready # a big AOF takes a while to load
    say "  redis      127.0.0.1:$REDIS_PORT (pid $(cat "$dir/redis.pid"))"
}

# redis.conf of the instance in DIR on PORT.
redis_conf() {
    local dir=$1 port=$2
    cat <<EOF
# Redis of a Magpie dev stack (scripts/dev). AOF on, as SPEC §6 requires.
bind 127.0.0.1
port $port
protected-mode yes
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir/data
appendonly yes
appendfsync everysec
save ""
maxclients 10000
# Timelines' memory (README "Redis settings for timelines"; bench/README "Timelines: cost per message"):
# a message's mp:msg hash holds its packet (~250 B for a 100-byte text), which at the default 64 makes the
# hash a hashtable (672 B per message instead of 392); a stream allocates a whole node of
# stream-node-max-bytes up front, so the default 4096 costs a user with 10 timeline entries ~475 B per entry
# (1024: ~170).
hash-max-listpack-value 1024
stream-node-max-bytes 1024
# Redis 7's per-command latency histograms (INFO latencystats) cost 10-13 % of Redis's CPU per chat message
# (bench/README "Chat: CPU per message"); LATENCY LATEST and SLOWLOG stay on.
latency-tracking no
EOF
}

# ---- the slot check ('up --redis slotcheck') ----
# One Redis at REDIS_PORT with cluster-enabled yes that owns all 16384 slots itself: the daemons talk to it
# as to any one Redis (redis.host; it never answers MOVED, since every slot is its own), but it refuses
# what a Redis Cluster refuses -- CROSSSLOT for a command or script whose declared keys span slots, and,
# for a script that starts with '#!lua' (every script Magpie sends does), any key the script builds
# itself in another slot than its first ("Script attempted to access keys that do not hash to the same
# slot"). So the integration tests find every cross-slot script on one process (README, "The slot check").
# A cluster-enabled Redis has database 0 only (SELECT is refused): slotcheck_conf_lines writes redis.db = 0.
# With redis.stream_shards > 1 the daemons talk to it as to a Redis Cluster (redis.cluster = that one node):
# a one-Redis client reads every shard's stream in one XREADGROUP, which a cluster refuses (CROSSSLOT); a
# cluster client reads them shard by shard (shared/rds.h), so the check then covers the cluster clients'
# per-shard paths too.
slotcheck_conf_lines() {
    [ "$REDIS_MODE" = slotcheck ] || return 0
    printf 'db = 0\n'
    [ "${MAGPIE_STREAM_SHARDS:-1}" -le 1 ] || printf 'cluster = 127.0.0.1:%s\n' "$REDIS_PORT"
}

# The slot check's Redis starts on its unix socket only (port 0) and opens REDIS_PORT once its cluster state
# is ok: a cluster master that (re)starts refuses every command with CLUSTERDOWN for its first 2 s
# (CLUSTER_WRITABLE_DELAY in Redis), which the daemons' one-Redis client would take for answers -- a
# heartbeat or presence resync lost after a restart in an outage test. Its cluster bus port is one of its
# own (SLOTCHECK_BUS_PORT in dev.env): the default, port + 10000, may be past 65535 with free ports.
slotcheck_sock() { echo "$RUN/redis/redis.sock"; }
slotcheck_ping() { [ "$(redis-cli -s "$(slotcheck_sock)" ping 2>/dev/null)" = PONG ]; }
slotcheck_ok() { redis-cli -s "$(slotcheck_sock)" cluster info 2>/dev/null | tr -d '\r' | grep -q '^cluster_state:ok$'; }

start_redis_slotcheck() {
    local dir=$RUN/redis
    if pid_alive "$dir/redis.pid" redis-server; then
        say "  redis      already running, slot check (pid $(cat "$dir/redis.pid"))"
        return 0
    fi
    port_in_use "$REDIS_PORT" && die "port $REDIS_PORT (REDIS_PORT in $RUN/dev.env) is taken by another program"
    if ! grep -q '^SLOTCHECK_BUS_PORT=' "$RUN/dev.env"; then
        echo "SLOTCHECK_BUS_PORT=$(free_port)" >>"$RUN/dev.env"
    fi
    local bus
    bus=$(sed -n 's/^SLOTCHECK_BUS_PORT=//p' "$RUN/dev.env" | tail -1)
    mkdir -p "$dir/data"
    {
        redis_conf "$dir" 0
        echo "# The slot check (scripts/lib/stack.sh, start_redis_slotcheck): a one-node cluster, on its unix"
        echo "# socket until its cluster state is ok; then CONFIG SET port opens REDIS_PORT ($REDIS_PORT)."
        echo "unixsocket $(slotcheck_sock)"
        echo "unixsocketperm 700"
        echo "cluster-enabled yes"
        echo "cluster-config-file $dir/data/nodes.conf"
        echo "cluster-port $bus"
        echo "# Announced in CLUSTER SLOTS (the daemons' cluster client at redis.stream_shards > 1 reads it):"
        echo "# without it the node announces the port it started with, 0."
        echo "cluster-announce-port $REDIS_PORT"
        echo "cluster-node-timeout 5000"
    } >"$dir/redis.conf"
    redis-server "$dir/redis.conf"
    wait_for "redis (unix socket)" 120 slotcheck_ping # a big AOF takes a while to load
    # The first start: no slot is assigned yet (nodes.conf keeps them for a restart).
    if ! redis-cli -s "$(slotcheck_sock)" cluster info 2>/dev/null | tr -d '\r' | grep -q '^cluster_slots_assigned:16384$'; then
        redis-cli -s "$(slotcheck_sock)" cluster addslotsrange 0 16383 >/dev/null ||
            die "redis: CLUSTER ADDSLOTSRANGE 0 16383 failed"
    fi
    wait_for "redis cluster_state:ok" 30 slotcheck_ok
    redis-cli -s "$(slotcheck_sock)" config set port "$REDIS_PORT" >/dev/null || die "redis: CONFIG SET port failed"
    wait_for redis 30 redis_ready
    say "  redis      127.0.0.1:$REDIS_PORT, slot check: one cluster node with every slot (pid $(cat "$dir/redis.pid"))"
}

# ---- Redis Sentinel ('up --redis sentinel') ----
# Each instance's config is written once: the sentinels rewrite theirs and the Redis ones (CONFIG REWRITE
# on a failover), and a later 'up' must start what they decided, not the first layout.

redis_port_ready() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }

# Does the sentinel on port $1 know the master, its replicas (REDIS_REPLICAS) and the two other sentinels?
sentinel_ready() {
    redis-cli -h 127.0.0.1 -p "$1" sentinel master "$SENTINEL_MASTER" 2>/dev/null |
        awk -v want="${REDIS_REPLICAS:-1}" 'NR % 2 == 1 { k = $0; next } k == "num-slaves" { r = $0 }
             k == "num-other-sentinels" { s = $0 } END { exit !(r >= want && s >= 2) }'
}

# Is the instance on port $1 a replica in sync, or a master with a replica in sync?
replication_up() {
    local info
    info=$(redis-cli -h 127.0.0.1 -p "$1" info replication 2>/dev/null | tr -d '\r')
    grep -q '^master_link_status:up' <<<"$info" || grep -q '^slave0:.*state=online' <<<"$info"
}

# start_redis_instance NAME DIR PORT [EXTRA CONFIG LINE]
start_redis_instance() {
    local name=$1 dir=$2 port=$3 extra=${4:-}
    if pid_alive "$dir/redis.pid" redis-server; then
        say "  $name already running (pid $(cat "$dir/redis.pid"))"
        return 0
    fi
    port_in_use "$port" && die "port $port ($name, $RUN/dev.env) is taken by another program"
    mkdir -p "$dir/data"
    if [ ! -f "$dir/redis.conf" ]; then
        {
            redis_conf "$dir" "$port"
            # A replica that joins (again) syncs at once rather than after the default 5 s.
            echo "repl-diskless-sync-delay 0"
            [ -z "$extra" ] || echo "$extra"
        } >"$dir/redis.conf"
    fi
    redis-server "$dir/redis.conf"
    wait_for "$name" 120 redis_port_ready "$port"
    wait_for "$name pid file" 10 test -s "$dir/redis.pid" # written a moment after the port opens
    say "  $name 127.0.0.1:$port (pid $(cat "$dir/redis.pid"))"
}

start_redis_sentinel() {
    local i port dir
    start_redis_instance "redis     " "$RUN/redis" "$REDIS_PORT"
    start_redis_instance "replica   " "$RUN/redis-replica" "$REDIS_REPLICA_PORT" "replicaof 127.0.0.1 $REDIS_PORT"
    [ -z "${REDIS_REPLICA2_PORT:-}" ] ||
        start_redis_instance "replica2  " "$RUN/redis-replica2" "$REDIS_REPLICA2_PORT" "replicaof 127.0.0.1 $REDIS_PORT"
    for i in 1 2 3; do
        port=${SENTINEL_PORT_LIST[$((i - 1))]}
        dir=$RUN/sentinel-$i
        if pid_alive "$dir/sentinel.pid" redis-server; then
            say "  sentinel-$i already running (pid $(cat "$dir/sentinel.pid"))"
            continue
        fi
        port_in_use "$port" && die "port $port (SENTINEL_PORTS in $RUN/dev.env) is taken by another program"
        mkdir -p "$dir"
        # Down after 1 s without a reply (MAGPIE_REDIS_DOWN_AFTER_MS), quorum 2 of 3: a dead master is replaced
        # within a few seconds. On a loaded box 1 s is below the master's stalls (bench/README, "Failover gap").
        [ -f "$dir/sentinel.conf" ] || cat >"$dir/sentinel.conf" <<EOF
# Sentinel $i of a Magpie dev stack (scripts/dev up --redis sentinel). Rewritten by Sentinel itself.
bind 127.0.0.1
port $port
daemonize yes
pidfile $dir/sentinel.pid
logfile $dir/sentinel.log
dir $dir
sentinel monitor $SENTINEL_MASTER 127.0.0.1 $REDIS_PORT 2
sentinel down-after-milliseconds $SENTINEL_MASTER ${MAGPIE_REDIS_DOWN_AFTER_MS:-1000}
sentinel failover-timeout $SENTINEL_MASTER 10000
sentinel parallel-syncs $SENTINEL_MASTER 1
EOF
        redis-server "$dir/sentinel.conf" --sentinel
        wait_for "sentinel-$i" 30 redis_port_ready "$port"
        say "  sentinel-$i 127.0.0.1:$port (pid $(cat "$dir/sentinel.pid"))"
    done
    wait_for "the replica's sync" 60 replication_up "$REDIS_REPLICA_PORT"
    [ -z "${REDIS_REPLICA2_PORT:-}" ] || wait_for "the second replica's sync" 60 replication_up "$REDIS_REPLICA2_PORT"
    # The sentinels find the replica and each other through the master (hello messages every 2 s).
    for port in "${SENTINEL_PORT_LIST[@]}"; do wait_for "sentinel on $port" 60 sentinel_ready "$port"; done
}

# ---- Redis Cluster ('up --redis cluster') ----
# Six nodes, each with its own folder; 'redis-cli --cluster create' makes three of them masters with a
# replica each, the first time only: each node keeps the cluster's layout in its data/nodes.conf, and a
# later 'up' starts what the cluster decided (after a failover, another node is master). A node that is
# down for cluster-node-timeout (1 s, like the sentinels' down-after) is failed over to its replica.

# Redis 7 or later: the cluster bus on a port of our choosing (cluster-port), and redis-cli --cluster.
# Prints why not and returns 1 otherwise (test_rcluster is skipped then, with that reason).
cluster_supported() {
    local v
    v=$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
    if [ -z "$v" ] || [ "$v" -lt 7 ]; then
        echo "redis-server ${v:-?} has no Redis Cluster support this stack can use (needs Redis 7: cluster-port)"
        return 1
    fi
    # (redis-cli --cluster help exits 1 even where it has the commands: read what it prints)
    if ! grep -q '^ *create ' <<<"$(redis-cli --cluster help 2>&1 || true)"; then
        echo "redis-cli has no --cluster (needs Redis 7's redis-tools)"
        return 1
    fi
}

# Does the node on port $1 say cluster_state:ok and know every node (6, or 9 with 2 replicas per master)?
cluster_node_ok() {
    local info
    info=$(redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r')
    grep -q '^cluster_state:ok' <<<"$info" && grep -q "^cluster_known_nodes:${#CLUSTER_PORT_LIST[@]}\$" <<<"$info"
}

# Is every master's every replica in sync (a failover has a replica to promote)?
cluster_replicas_up() {
    local p n=0
    for p in "${CLUSTER_PORT_LIST[@]}"; do
        redis-cli -h 127.0.0.1 -p "$p" info replication 2>/dev/null | tr -d '\r' |
            grep -q '^master_link_status:up' && n=$((n + 1))
    done
    [ "$n" -ge $((${#CLUSTER_PORT_LIST[@]} - 3)) ]
}

start_redis_cluster() {
    local i port bus dir why nodes=() n replicas
    why=$(cluster_supported) || die "$why"
    n=$(cluster_node_count)
    replicas=$((n / 3 - 1))
    [ "${#CLUSTER_PORT_LIST[@]}" = "$n" ] && [ "${#CLUSTER_BUS_PORT_LIST[@]}" = "$n" ] ||
        die "$RUN/dev.env: CLUSTER_PORTS and CLUSTER_BUS_PORTS must list $n ports each (REDIS_REPLICAS=$replicas)"
    for ((i = 1; i <= n; i++)); do
        port=${CLUSTER_PORT_LIST[$((i - 1))]}
        bus=${CLUSTER_BUS_PORT_LIST[$((i - 1))]}
        port_in_use "$bus" && ! pid_alive "$RUN/cluster-$i/redis.pid" redis-server &&
            die "port $bus (CLUSTER_BUS_PORTS in $RUN/dev.env) is taken by another program"
        # cluster-require-full-coverage stays yes (Redis' default): while a master is down and not yet
        # replaced, every node answers CLUSTERDOWN, which the clients must ride out (shared/rcluster.h).
        start_redis_instance "cluster-$i " "$RUN/cluster-$i" "$port" "cluster-enabled yes
cluster-config-file nodes.conf
cluster-port $bus
cluster-node-timeout ${MAGPIE_REDIS_DOWN_AFTER_MS:-1000}"
        nodes+=("127.0.0.1:$port")
    done
    if redis-cli -h 127.0.0.1 -p "${CLUSTER_PORT_LIST[0]}" cluster info 2>/dev/null | tr -d '\r' |
        grep -q '^cluster_slots_assigned:0$'; then
        say "  creating the cluster (3 masters, $replicas replica(s) each)"
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes >"$RUN/cluster-create.log" 2>&1 ||
            die "redis-cli --cluster create failed; see $RUN/cluster-create.log"
    fi
    for port in "${CLUSTER_PORT_LIST[@]}"; do wait_for "cluster node on $port" 60 cluster_node_ok "$port"; done
    wait_for "the cluster's replicas" 60 cluster_replicas_up
    say "  cluster    cluster_state:ok, 3 masters + $((n - 3)) replicas on 127.0.0.1:${CLUSTER_PORT_LIST[*]}"
}

# Stop every cluster node at once (SIGTERM to all, then wait for all; SIGKILL after 10 s): one by one, the
# first master gone would be failed over to its replica while the others are still up. Redis removes its
# own pid file as it exits, so the pids are read before.
stop_cluster() {
    local f pid pids=() i
    for f in "$RUN"/cluster-*/redis.pid; do
        pid_alive "$f" redis-server || continue
        pid=$(cat "$f" 2>/dev/null) || continue
        pids+=("$pid")
    done
    [ "${#pids[@]}" -gt 0 ] || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 100; i++)); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
        if [ -d "/proc/$pid" ]; then
            say "  cluster node (pid $pid) did not stop in 10s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$RUN"/cluster-*/redis.pid
}

# ---- MariaDB -------------------------------------------------------------------------------------------

mysql_root() { mariadb --no-defaults -S "$RUN/mariadb/mysqld.sock" -u root "$@"; }

start_mariadb() {
    local dir=$RUN/mariadb user
    user=$(id -un)
    if pid_alive "$dir/mysqld.pid" mariadbd; then
        say "  mariadb    already running (pid $(cat "$dir/mysqld.pid"))"
        return 0
    fi
    port_in_use "$MYSQL_PORT" && die "port $MYSQL_PORT (MYSQL_PORT in $RUN/dev.env) is taken by another program"
    mkdir -p "$dir"
    if [ ! -d "$dir/data/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
            --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 ||
            die "mariadb-install-db failed; see $dir/install.log"
    fi
    local cmd=(mariadbd --no-defaults --datadir="$dir/data" --socket="$dir/mysqld.sock" --port="$MYSQL_PORT"
        --bind-address=127.0.0.1 --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" --user="$user"
        --skip-name-resolve --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2
        --max-connections=500)
    # The exact command, one argument per line, so a test can start MariaDB again the same way after
    # stopping it (tests/integration/magpie_stack.py: Stack.start_mariadb).
    printf '%s\n' "${cmd[@]}" >"$dir/mariadbd.cmd"
    setsid "${cmd[@]}" </dev/null >/dev/null 2>&1 &
    disown # tests stop and kill it on purpose; the shell need not report that
    wait_for mariadb 60 mariadb-admin --no-defaults -S "$dir/mysqld.sock" -u root ping
    wait_for "mariadb pid file" 10 test -s "$dir/mysqld.pid"
    mysql_root <<EOF
CREATE DATABASE IF NOT EXISTS magpie CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'magpie'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS 'magpie'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON magpie.* TO 'magpie'@'127.0.0.1';
GRANT ALL ON magpie.* TO 'magpie'@'localhost';
EOF
    say "  mariadb    127.0.0.1:$MYSQL_PORT (pid $(cat "$dir/mysqld.pid"))"
}

migrate() {
    "$BUILD/sql/magpie-migrate" -c "$RUN/magpie.conf" -d "$REPO/sql" 2>>"$RUN/logs/migrate.log" ||
        die "schema migration failed; see $RUN/logs/migrate.log"
    say "  schema     migrated ($(ls "$REPO"/sql/[0-9]*.sql | wc -l) migrations)"
}

# ---- nginx ---------------------------------------------------------------------------------------------

start_nginx() {
    local dir=$RUN/nginx push_servers="" p user_line=""
    mkdir -p "$dir/tmp"
    for p in "${PUSH_PORT_LIST[@]}"; do
        push_servers="${push_servers}server 127.0.0.1:$p max_fails=0; "
    done
    # As root, nginx's workers would switch to nobody, who cannot read a checkout in root's home.
    [ "$(id -u)" = 0 ] && user_line="user root;"
    LISTEN=127.0.0.1:$NGINX_PORT SERVER_NAME=localhost ACCESS_LOG=$dir/access.log ERROR_LOG=$dir/error.log \
        FCGI_SOCKET=$RUN/http.sock PUSH_SERVERS=$push_servers WEB_ROOT=$REPO/web \
        sh "$REPO/nginx/render" "$REPO/nginx/magpie-site.conf.in" >"$dir/magpie-site.conf"
    RUN_DIR=$dir USER_LINE=$user_line sh "$REPO/nginx/render" "$REPO/nginx/dev-nginx.conf.in" >"$dir/nginx.conf"
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" 2>"$dir/conftest.log" ||
        die "nginx rejected the rendered conf: $(cat "$dir/conftest.log")"
    if pid_alive "$dir/nginx.pid" nginx; then
        nginx -p "$dir" -c "$dir/nginx.conf" -s reload 2>/dev/null
        say "  nginx      reloaded (pid $(cat "$dir/nginx.pid"))"
        return 0
    fi
    port_in_use "$NGINX_PORT" && die "port $NGINX_PORT (NGINX_PORT in $RUN/dev.env) is taken by another program"
    nginx -p "$dir" -c "$dir/nginx.conf"
    wait_for nginx 10 curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/"
    say "  nginx      http://127.0.0.1:$NGINX_PORT/ (pid $(cat "$dir/nginx.pid"))"
}

# ---- magpie daemons ------------------------------------------------------------------------------------

# Core dumps (issue 21: the evidence of a crash). Each daemon runs with RLIMIT_CORE unlimited and its working
# directory in cores/NAME/, so a relative kernel.core_pattern (Debian's default "core") puts its core there;
# the daemon's waiter (below) then moves it to cores/NAME.PID.core. kernel.core_pattern is system-wide and
# is left alone: when it is a pipe (systemd-coredump, apport) or an absolute path the core goes there, and
# core_note says so.
core_note() {
    local pattern
    pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo "?")
    case "$pattern" in
    '|'* | /*) echo "cores go where kernel.core_pattern says ($pattern), not to $RUN/cores" ;;
    *) echo "cores: $RUN/cores/ (kernel.core_pattern $pattern)" ;;
    esac
}

# start_daemon NAME BINARY PROBE-URL [VAR=value...]: run BINARY -c magpie.conf in the background with the
# given environment overrides, its log in logs/NAME.log; wait until PROBE-URL answers any HTTP status.
# Daemons that are not built yet are skipped, so the stack grows as the components land.
# A small waiter (a bash that is the daemon's parent) records how the daemon ended in pids/NAME.exit --
# "pid=.. status=N" or "pid=.. signal=SIGSEGV core=PATH" -- and, for a death by signal, appends a line
# saying so to logs/NAME.out; stack_status and 'scripts/dev logs' read it.
start_daemon() {
    local name=$1 bin=$2 probe=$3 i
    shift 3
    if [ ! -x "$bin" ]; then
        return 0
    fi
    if pid_alive "$RUN/pids/$name.pid" "$(basename "$bin")"; then
        say "  $(printf '%-10s' "$name") already running (pid $(cat "$RUN/pids/$name.pid"))"
        return 0
    fi
    bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") # the daemon's cwd is its core directory
    mkdir -p "$RUN/cores/$name"
    rm -f "$RUN/pids/$name.pid" "$RUN/pids/$name.exit"
    # Sanitizer runtimes switch core dumps off by default (their shadow memory is huge); ASan's is not
    # dumped (use_madv_dontdump), so an ASan build may write one too.
    local asan=${ASAN_OPTIONS:+$ASAN_OPTIONS:}disable_coredump=0
    # The exact command, one argument per line, so a test can start this daemon again the same way after
    # killing it (tests/integration/magpie_stack.py: Stack.start_daemon).
    printf '%s\n' env "$@" ASAN_OPTIONS="$asan" MAGPIE_LOG_FILE="$RUN/logs/$name.log" "$bin" -c "$RUN/magpie.conf" \
        >"$RUN/pids/$name.cmd"
    # shellcheck disable=SC2016
    setsid bash -c '
        name=$1 run=$2
        shift 2
        cd "$run/cores/$name" || exit 1
        ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -H -c)" 2>/dev/null
        "$@" </dev/null >>"$run/logs/$name.out" 2>&1 &
        pid=$!
        echo "$pid" >"$run/pids/$name.pid.new" && mv "$run/pids/$name.pid.new" "$run/pids/$name.pid"
        wait "$pid"
        rc=$?
        at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
        if [ "$rc" -gt 128 ]; then
            sig=SIG$(kill -l "$rc" 2>/dev/null || echo "$((rc - 128))")
            core=""
            for f in core core."$pid" core.*; do
                if [ -f "$f" ]; then
                    core=$run/cores/$name.$pid.core
                    mv -f "$f" "$core"
                    break
                fi
            done
            echo "pid=$pid signal=$sig core=${core:-none} at=$at" >"$run/pids/$name.exit"
            echo "$at dev: $name (pid $pid) died of $sig; core: ${core:-none written}" >>"$run/logs/$name.out"
        else
            echo "pid=$pid status=$rc at=$at" >"$run/pids/$name.exit"
        fi
    ' waiter "$name" "$RUN" env "$@" ASAN_OPTIONS="$asan" MAGPIE_LOG_FILE="$RUN/logs/$name.log" "$bin" \
        -c "$RUN/magpie.conf" </dev/null >/dev/null 2>&1 &
    disown # tests kill daemons on purpose (kill -9 recovery); the shell need not report that
    for ((i = 0; i < 50; i++)); do
        [ -s "$RUN/pids/$name.pid" ] && break
        sleep 0.1
    done
    wait_for "$name" 20 curl -sS -o /dev/null "$probe"
    say "  $(printf '%-10s' "$name") $probe (pid $(cat "$RUN/pids/$name.pid"))"
}

start_daemons() {
    local i node
    start_daemon http "$BUILD/http/magpie-http" "http://127.0.0.1:$HTTP_PORT/healthz"
    for i in "${!PUSH_PORT_LIST[@]}"; do
        node=$((i + 1))
        start_daemon "push$node" "$BUILD/push/magpie-push" "http://127.0.0.1:${PUSH_METRICS_PORT_LIST[$i]}/healthz" \
            MAGPIE_PUSH_NODE_ID=$node MAGPIE_PUSH_LISTEN=127.0.0.1:${PUSH_PORT_LIST[$i]} \
            MAGPIE_PUSH_METRICS_LISTEN=127.0.0.1:${PUSH_METRICS_PORT_LIST[$i]}
    done
    start_daemon persist "$BUILD/push/magpie-persist" "http://127.0.0.1:$PERSIST_METRICS_PORT/healthz"
    start_daemon notify "$BUILD/notify/magpie-notify" "http://127.0.0.1:$NOTIFY_METRICS_PORT/healthz"
}

# ---- the stack on Redis Cluster ('up --redis cluster') --------------------------------------------------
# Every daemon runs on the cluster (magpie-push through push/rdsa_cluster.c, the others through
# shared/rds.h over shared/rcluster.h), with redis.stream_shards = MAGPIE_STREAM_SHARDS (default 1): the
# same daemons as start_daemons starts.
start_cluster_daemons() {
    start_daemons
}

start_cluster_stack() {
    start_mariadb
    migrate
    start_cluster_daemons
    start_nginx
    say "  $(core_note)"
}

# ---- the whole stack -----------------------------------------------------------------------------------

start_stack() {
    mkdir -p "$RUN"
    RUN=$(cd "$RUN" && pwd) # the daemons run in cores/NAME/: every path they are given must be absolute
    load_dev_env
    ensure_secrets
    write_magpie_conf
    say "starting the stack in $RUN"
    start_redis
    if [ "$REDIS_MODE" = cluster ]; then
        start_cluster_stack
        return 0
    fi
    start_mariadb
    migrate
    start_daemons
    start_nginx
    say "  $(core_note)"
}

# Stop, in reverse order, what start_stack started: only processes recorded in this stack's pid files.
stop_stack() {
    local f name
    [ -d "$RUN" ] || return 0
    say "stopping the stack in $RUN"
    [ -f "$RUN/nginx/nginx.pid" ] && stop_pidfile "$RUN/nginx/nginx.pid" nginx 10
    for f in "$RUN"/pids/*.pid; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .pid)
        case "$name" in
        push*) stop_pidfile "$f" magpie-push 10 ;;
        persist) stop_pidfile "$f" magpie-persist 10 ;;
        http) stop_pidfile "$f" magpie-http 10 ;;
        *) stop_pidfile "$f" "magpie-$name" 10 ;;
        esac
    done
    [ -f "$RUN/mariadb/mysqld.pid" ] && stop_pidfile "$RUN/mariadb/mysqld.pid" mariadbd 60
    # The sentinels first, so that stopping the master starts no failover.
    for f in "$RUN"/sentinel-*/sentinel.pid; do
        [ -e "$f" ] && stop_pidfile "$f" redis-server 10
    done
    for f in "$RUN"/redis-replica/redis.pid "$RUN"/redis-replica2/redis.pid; do
        [ -f "$f" ] && stop_pidfile "$f" redis-server 10
    done
    stop_cluster
    [ -f "$RUN/redis/redis.pid" ] && stop_pidfile "$RUN/redis/redis.pid" redis-server 10
    rm -f "$RUN/http.sock"
    say "stopped"
}

# How magpie daemon NAME ended, for status and logs: "crashed: signal SIGSEGV at ..., core ..." from what
# its waiter recorded (pids/NAME.exit), else from a fatal-signal line its log ends with (a daemon a test
# restarted without the waiter), else "stopped".
how_it_ended() {
    local name=$1 exitf=$RUN/pids/$1.exit line sig core at st
    line=$(cat "$exitf" 2>/dev/null || true)
    # Only the record of the process the pid file names (a test may have restarted the daemon by hand).
    if [ -n "$line" ] && [[ "$line" == "pid=$(cat "$RUN/pids/$name.pid" 2>/dev/null) "* ]]; then
        sig=$(sed -n 's/.*signal=\([^ ]*\).*/\1/p' <<<"$line")
        core=$(sed -n 's/.*core=\([^ ]*\).*/\1/p' <<<"$line")
        at=$(sed -n 's/.*at=\([^ ]*\).*/\1/p' <<<"$line")
        st=$(sed -n 's/.*status=\([^ ]*\).*/\1/p' <<<"$line")
        case "$sig" in
        SIGSEGV | SIGBUS | SIGABRT | SIGFPE | SIGILL | SIGSYS | SIGTRAP | SIGXCPU | SIGXFSZ)
            echo "CRASHED  signal $sig at $at, core: $core (log: $RUN/logs/$name.log)"
            return 0
            ;;
        "") [ "$st" = 0 ] || { echo "exited   status $st at $at (log: $RUN/logs/$name.log)"; return 0; } ;;
        SIGTERM | SIGINT) ;;
        *) echo "killed   signal $sig at $at" && return 0 ;;
        esac
    fi
    # The log's last event (backtrace frames do not start with a time stamp) is its fatal-signal line.
    line=$(tail -n 200 "$RUN/logs/$name.log" 2>/dev/null | grep -E '^[0-9]{4}-[0-9]{2}-' | tail -n 1 || true)
    if [[ "$line" == *" fatal signal sig="* ]]; then
        sig=$(sed 's/.* fatal signal sig=\([^ ]*\).*/\1/' <<<"$line")
        echo "CRASHED  signal $sig at ${line%% *} (see $RUN/logs/$name.log)"
        return 0
    fi
    echo "stopped"
}

stack_status() {
    local f name
    [ -f "$RUN/dev.env" ] || { say "no stack in $RUN (run scripts/dev up)"; return 1; }
    load_dev_env
    show() {
        if pid_alive "$2" "$3"; then
            printf '  %-10s running  pid %-8s %s\n' "$1" "$(cat "$2")" "$4"
        else
            printf '  %-10s %s\n' "$1" "$(how_it_ended "$1")"
        fi
    }
    say "stack in $RUN"
    if [ "$REDIS_MODE" = cluster ]; then
        local role
        for ((f = 1; f <= ${#CLUSTER_PORT_LIST[@]}; f++)); do
            role=$(redis-cli -h 127.0.0.1 -p "${CLUSTER_PORT_LIST[$((f - 1))]}" role 2>/dev/null | head -1) || true
            show "cluster-$f" "$RUN/cluster-$f/redis.pid" redis-server "127.0.0.1:${CLUSTER_PORT_LIST[$((f - 1))]} ${role:-}"
        done
        say "  cluster:   $(redis-cli -h 127.0.0.1 -p "${CLUSTER_PORT_LIST[0]}" cluster info 2>/dev/null | tr -d '\r' |
            grep '^cluster_state:' || echo 'no answer')"
    else
        show redis "$RUN/redis/redis.pid" redis-server "127.0.0.1:$REDIS_PORT"
    fi
    if [ "$REDIS_MODE" = sentinel ]; then
        show replica "$RUN/redis-replica/redis.pid" redis-server "127.0.0.1:$REDIS_REPLICA_PORT"
        [ -z "${REDIS_REPLICA2_PORT:-}" ] ||
            show replica2 "$RUN/redis-replica2/redis.pid" redis-server "127.0.0.1:$REDIS_REPLICA2_PORT"
        for f in 1 2 3; do
            show "sentinel-$f" "$RUN/sentinel-$f/sentinel.pid" redis-server "127.0.0.1:${SENTINEL_PORT_LIST[$((f - 1))]}"
        done
        local m p
        for p in "${SENTINEL_PORT_LIST[@]}"; do
            m=$(redis-cli -h 127.0.0.1 -p "$p" sentinel get-master-addr-by-name "$SENTINEL_MASTER" 2>/dev/null |
                tr '\n' ':' | sed 's/:$//') || true
            [[ "$m" == *:* ]] && break
        done
        [[ "$m" == *:* ]] || m="unknown (no sentinel answers)"
        say "  master now: $m"
    fi
    show mariadb "$RUN/mariadb/mysqld.pid" mariadbd "127.0.0.1:$MYSQL_PORT"
    show nginx "$RUN/nginx/nginx.pid" nginx "http://127.0.0.1:$NGINX_PORT/"
    for f in "$RUN"/pids/*.pid; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .pid)
        case "$name" in
        push*) show "$name" "$f" magpie-push "" ;;
        *) show "$name" "$f" "magpie-$name" "" ;;
        esac
    done
}
