#!/usr/bin/env bash
# bench/http/run.sh -- wrk against POST /IM/token (issue 3's benchmark), through nginx -> FastCGI and against
# the standalone front-end, first alone, then while N QR long polls are pending.
#
#   bench/http/run.sh [--smoke] [--run DIR] [--out FILE]
#
#   --run DIR   the stack to measure (default .run, the one 'scripts/dev up' starts); it needs /tk
#               (http.enable_test_token = yes, as the dev stack has) to get a login token
#   --smoke     a few seconds, few connections, 20 polls: checks the scripts work, measures nothing
#   --out FILE  where the report goes (default bench/results/http-<host>-<date>.md; smoke: stdout only)
#
# Targets (issue 3, on a quiet 2-core machine): >= 15,000 req/s and p99 <= 10 ms through nginx; with 1,000
# long polls pending p99 stays <= 50 ms. Do not run the full benchmark on a shared machine: the numbers
# would say nothing. Environment: WRK_THREADS, WRK_CONNECTIONS, WRK_DURATION, POLLS override the defaults.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN=$REPO/.run
OUT=""
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) SMOKE=1 ;;
    --run) RUN=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
    shift
done

RUN=$(cd "$RUN" && pwd) # nginx -p below needs an absolute path
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -f "$RUN/dev.env" ] || { echo "no stack in $RUN (scripts/dev up)" >&2; exit 1; }
# shellcheck disable=SC1091
. "$RUN/dev.env"
NGINX=http://127.0.0.1:$NGINX_PORT
STANDALONE=http://127.0.0.1:$HTTP_PORT

if [ $SMOKE = 1 ]; then
    THREADS=${WRK_THREADS:-1} CONNS=${WRK_CONNECTIONS:-4} DURATION=${WRK_DURATION:-1s} POLLS=${POLLS:-20}
else
    THREADS=${WRK_THREADS:-2} CONNS=${WRK_CONNECTIONS:-64} DURATION=${WRK_DURATION:-30s} POLLS=${POLLS:-1000}
fi

# A login token for a benchmark user (never printed: tokens stay out of every log and report).
MAGPIE_BENCH_TOKEN=$(curl -fsS -X POST "$STANDALONE/tk" -d '{"uid": 900000001}' |
    /usr/bin/python3 -c 'import json, sys; d = json.load(sys.stdin); assert d["code"] == 1, d; print(d["data"])')
export MAGPIE_BENCH_TOKEN

results=()
measure() { # NAME URL
    local line
    line=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$HERE/imtoken.lua" "$2/IM/token" |
        grep '^RESULT' || true)
    [ -n "$line" ] || { echo "wrk gave no result for $1" >&2; exit 1; }
    results+=("$1 ${line#RESULT }")
    echo "$1 ${line#RESULT }"
}

holder=""
stop_holder() { [ -n "$holder" ] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null; holder=""; }
trap stop_holder EXIT

measure "nginx-fcgi" "$NGINX"
measure "standalone" "$STANDALONE"

# The floor of the path: the same load through an nginx like the site's (same workers, an access log) to
# a libfcgi responder that does no work (fcgi_floor.c). What magpie-http's own work costs is the
# difference; a target above this line cannot be met on this machine by any FastCGI application.
FLOOR=$RUN/bench-http
rm -rf "$FLOOR"
mkdir -p "$FLOOR/tmp"
cc -O2 -o "$FLOOR/fcgi_floor" "$HERE/fcgi_floor.c" -lfcgi -lpthread
floor_port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
floor_threads=$(awk -F' *= *' '$1 == "threads" {t = $2} END {print t ? t : 8}' "$RUN/magpie.conf")
cat >"$FLOOR/nginx.conf" <<CONF
$(grep -m1 '^user ' "$RUN/nginx/nginx.conf")
worker_processes $(awk '$1 == "worker_processes" {sub(";", "", $2); print $2}' "$RUN/nginx/nginx.conf");
pid $FLOOR/nginx.pid;
error_log $FLOOR/error.log;
events { worker_connections 4096; }
http {
    log_format floor '\$remote_addr [\$time_iso8601] "\$request_method \$uri" \$status \$body_bytes_sent \$request_time "\$http_user_agent"';
    access_log $FLOOR/access.log floor;
    client_body_temp_path $FLOOR/tmp;
    server {
        listen 127.0.0.1:$floor_port;
        location = /IM/token {
            fastcgi_pass unix:$FLOOR/floor.sock;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param DOCUMENT_URI \$uri;
            fastcgi_param CONTENT_LENGTH \$content_length;
            fastcgi_param HTTP_X_REAL_IP \$remote_addr;
        }
    }
}
CONF
"$FLOOR/fcgi_floor" "$FLOOR/floor.sock" "$floor_threads" &
floor_pid=$!
disown # it is killed below; the shell need not report that
nginx -p "$FLOOR" -c "$FLOOR/nginx.conf" -e "$FLOOR/error.log"
sleep 0.5
measure "floor:nginx-fcgi-empty-handler" "http://127.0.0.1:$floor_port"
nginx -p "$FLOOR" -c "$FLOOR/nginx.conf" -e "$FLOOR/error.log" -s stop
kill -KILL "$floor_pid" # libfcgi catches SIGTERM and stays in accept()

# The same while POLLS browsers wait on their QR codes (half through each front-end).
fifo=$(mktemp -u)
mkfifo "$fifo"
/usr/bin/python3 "$HERE/hold_polls.py" "$NGINX" $((POLLS / 2)) >"$fifo" &
holder=$!
read -r ready <"$fifo" || true
rm -f "$fifo"
[ "${ready%% *}" = READY ] || { echo "the long-poll holder did not start" >&2; exit 1; }
holder2_fifo=$(mktemp -u)
mkfifo "$holder2_fifo"
/usr/bin/python3 "$HERE/hold_polls.py" "$STANDALONE" $((POLLS - POLLS / 2)) >"$holder2_fifo" &
holder2=$!
read -r ready2 <"$holder2_fifo" || true
rm -f "$holder2_fifo"
[ "${ready2%% *}" = READY ] || { kill "$holder2"; echo "the long-poll holder did not start" >&2; exit 1; }
waiting=$(curl -fsS "$STANDALONE/metrics" | awk '$1 == "magpie_http_long_polls" {print $2}')
echo "long polls waiting in magpie-http: $waiting"
measure "nginx-fcgi+${POLLS}polls" "$NGINX"
measure "standalone+${POLLS}polls" "$STANDALONE"
kill "$holder2" 2>/dev/null; wait "$holder2" 2>/dev/null || true
stop_holder

[ $SMOKE = 1 ] && [ -z "$OUT" ] && exit 0
OUT=${OUT:-$REPO/bench/results/http-$(hostname -s)-$(date -u +%Y%m%d-%H%M).md}
mkdir -p "$(dirname "$OUT")"
{
    echo "# magpie-http: POST /IM/token with wrk"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
    echo "- commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- wrk: -t$THREADS -c$CONNS -d$DURATION; long polls pending in the second half: $POLLS (magpie-http counted $waiting)"
    echo "- mode: $([ $SMOKE = 1 ] && echo 'smoke (not a measurement)' || echo full)"
    echo
    echo "| run | requests/s | p50 ms | p99 ms | max ms | socket errors | HTTP >= 400 |"
    echo "|---|---|---|---|---|---|---|"
    for r in "${results[@]}"; do
        set -- $r
        name=$1
        shift
        declare -A kv=()
        for pair in "$@"; do kv[${pair%%=*}]=${pair#*=}; done
        echo "| $name | ${kv[rps]} | ${kv[p50_ms]} | ${kv[p99_ms]} | ${kv[max_ms]} | ${kv[errors]} | ${kv[non200]} |"
    done
    echo
    echo "Targets: >= 15,000 req/s and p99 <= 10 ms through nginx; p99 <= 50 ms with 1,000 polls pending."
    echo "floor = the same load through an nginx like the site's to a FastCGI responder that does no work"
    echo "(bench/http/fcgi_floor.c): the most the nginx -> FastCGI path gives on this machine."
} >"$OUT"
echo "report: $OUT"
