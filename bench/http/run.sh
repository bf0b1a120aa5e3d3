#!/usr/bin/env bash
# bench/http/run.sh -- wrk against POST /IM/token (issue 3's benchmark), through nginx -> FastCGI and against
# the standalone front-end, first alone, then while N QR long polls are pending; and the path's floor (issue
# 19): the same load through an nginx with the stack's own configuration to an empty FastCGI responder,
# alternated with the nginx -> magpie-http run ROUNDS times, so that their ratio is measured in one run.
#
#   bench/http/run.sh [--smoke] [--run DIR] [--out FILE]
#
#   --run DIR   the stack to measure (default .run, the one 'scripts/dev up' starts); it needs /tk
#               (http.enable_test_token = yes, as the dev stack has) to get a login token
#   --smoke     a few seconds, few connections, 20 polls: checks the scripts work, measures nothing
#   --out FILE  where the report goes (default bench/results/http-<host>-<date>.md; smoke: stdout only)
#
# Targets (issue 3, on a quiet 2-core machine): >= 15,000 req/s and p99 <= 10 ms through nginx; with 1,000
# long polls pending p99 stays <= 50 ms. Issue 19: nginx -> magpie-http >= 0.8 x the floor. Do not run the
# full benchmark on a shared machine: the numbers would say nothing. Environment: WRK_THREADS,
# WRK_CONNECTIONS, WRK_DURATION, POLLS, ROUNDS override the defaults.
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
    *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
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
    ROUNDS=${ROUNDS:-1}
else
    THREADS=${WRK_THREADS:-2} CONNS=${WRK_CONNECTIONS:-64} DURATION=${WRK_DURATION:-20s} POLLS=${POLLS:-1000}
    ROUNDS=${ROUNDS:-3}
fi

# A login token for a benchmark user (never printed: tokens stay out of every log and report).
MAGPIE_BENCH_TOKEN=$(curl -fsS -X POST "$STANDALONE/tk" -d '{"uid": 900000001}' |
    /usr/bin/python3 -c 'import json, sys; d = json.load(sys.stdin); assert d["code"] == 1, d; print(d["data"])')
export MAGPIE_BENCH_TOKEN

# CPU time (clock ticks, user + system, all threads) of the processes given.
ticks() {
    local pid sum=0
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] && sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo $sum
}
# Context switches (voluntary + involuntary, all threads) of the processes given: how often they slept and
# woke, which decides what a request costs on this box as much as the work does.
ctxsw() {
    local pid sum=0
    for pid in "$@"; do
        sum=$((sum + $(cat /proc/"$pid"/task/*/status 2>/dev/null |
            awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s + 0}')))
    done
    echo $sum
}
HZ=$(getconf CLK_TCK)
wrk_time=$(mktemp)
nginx_workers() { pgrep -P "$(cat "$1")" | tr '\n' ' '; } # the workers of the nginx whose pid file is $1

results=()
# measure NAME URL [LABEL PIDS]... -- one wrk run; for each LABEL, the CPU its PIDS (one quoted list) used
# per request over the run, in µs.
measure() {
    local name=$1 url=$2 line cpu="" i reqs
    shift 2
    local -a labels=() pids=() before=() cs_before=()
    while [ $# -ge 2 ]; do labels+=("$1"); pids+=("$2"); shift 2; done
    for i in "${!pids[@]}"; do before[i]=$(ticks ${pids[i]}); cs_before[i]=$(ctxsw ${pids[i]}); done
    line=$(/usr/bin/time -f "WRKCPU %U %S" -o "$wrk_time" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
        -s "$HERE/imtoken.lua" "$url/IM/token" | grep '^RESULT' || true)
    [ -n "$line" ] || { echo "wrk gave no result for $name" >&2; exit 1; }
    reqs=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$line")
    ((reqs > 0)) || reqs=1
    for i in "${!pids[@]}"; do
        cpu="$cpu ${labels[i]}_us=$(( ($(ticks ${pids[i]}) - before[i]) * 1000000 / HZ / reqs ))"
        cpu="$cpu ${labels[i]}_cs=$(awk -v d=$(($(ctxsw ${pids[i]}) - cs_before[i])) -v n="$reqs" 'BEGIN {printf "%.2f", d / n}')"
    done
    cpu="$cpu wrk_us=$(awk -v n="$reqs" '/^WRKCPU/ {printf "%d", ($2 + $3) * 1e6 / n}' "$wrk_time")"
    line="${line#RESULT }$cpu load=$(cut -d' ' -f1 /proc/loadavg)"
    results+=("$name $line")
    echo "$name $line"
}
rps_of() { sed 's/.* rps=\([0-9]*\).*/\1/' <<<"$1"; }

HTTP_PID=$(cat "$RUN/pids/http.pid")
REDIS_PID=$(cat "$RUN/redis/redis.pid" 2>/dev/null || true)

# The floor of the path: the same load through an nginx with the stack's own configuration -- its rendered
# nginx.conf and site conf, only the listen port, the FastCGI socket and the directories changed -- to a
# libfcgi responder that does no work and handles connections as magpie-http does (fcgi_floor.c). What
# magpie-http's own work costs is the difference; a target above this line cannot be met on this machine
# by any FastCGI application.
FLOOR=$RUN/bench-http
rm -rf "$FLOOR"
mkdir -p "$FLOOR/tmp"
cc -O2 -Wall -o "$FLOOR/fcgi_floor" "$HERE/fcgi_floor.c" -lfcgi -lpthread
floor_port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
floor_threads=$(awk -F' *= *' '$1 == "threads" {t = $2} END {print t ? t : 8}' "$RUN/magpie.conf")
for f in nginx.conf magpie-site.conf; do
    sed -e "s|unix:$RUN/http.sock|unix:$FLOOR/floor.sock|g" -e "s|$RUN/nginx/|$FLOOR/|g" -e "s|$RUN/nginx;|$FLOOR;|g" \
        -e "s|listen 127.0.0.1:$NGINX_PORT;|listen 127.0.0.1:$floor_port;|" "$RUN/nginx/$f" >"$FLOOR/$f"
done
grep -q "unix:$FLOOR/floor.sock" "$FLOOR/magpie-site.conf" && grep -q "127.0.0.1:$floor_port;" "$FLOOR/magpie-site.conf" ||
    { echo "cannot derive the floor's nginx conf from $RUN/nginx" >&2; exit 1; }
"$FLOOR/fcgi_floor" "$FLOOR/floor.sock" "$floor_threads" &
floor_pid=$!
disown # it is killed below; the shell need not report that
nginx -p "$FLOOR" -c "$FLOOR/nginx.conf" -e "$FLOOR/error.log"
stop_floor() {
    nginx -p "$FLOOR" -c "$FLOOR/nginx.conf" -e "$FLOOR/error.log" -s stop 2>/dev/null || true
    kill -KILL "$floor_pid" 2>/dev/null || true # libfcgi catches SIGTERM
}
trap stop_floor EXIT
sleep 0.5

# nginx -> magpie-http and the floor, alternated (A F, F A, ...): the machine's drift hits both alike.
# Besides requests/s, each round gives the ratio the two would have on a machine doing nothing else: the
# floor's CPU per request (wrk, nginx, responder) over the app's (wrk, nginx, magpie-http, Redis), which
# what else runs on a shared machine disturbs far less than it disturbs requests/s.
ratios=() cpu_ratios=()
cpu_sum() { # the sum of the *_us fields of a result line
    tr ' ' '\n' <<<"$1" | awk -F= '$1 ~ /_us$/ {s += $2} END {print s + 0}'
}
cpu_ratio() { awk -v a="$(cpu_sum "$1")" -v f="$(cpu_sum "$2")" 'BEGIN {printf "%.2f", a ? f / a : 0}'; }
app_run() {
    measure "nginx-fcgi" "$NGINX" http "$HTTP_PID" nginx "$(nginx_workers "$RUN/nginx/nginx.pid")" redis "$REDIS_PID"
    app_line=${results[-1]}
}
floor_run() {
    measure "floor:nginx-fcgi-empty-handler" "http://127.0.0.1:$floor_port" \
        floor "$floor_pid" nginx "$(nginx_workers "$FLOOR/nginx.pid")"
    floor_line=${results[-1]}
}
for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then app_run; floor_run; else floor_run; app_run; fi
    ratios+=("$(awk -v a="$(rps_of "$app_line")" -v f="$(rps_of "$floor_line")" 'BEGIN {printf "%.2f", f ? a / f : 0}')")
    cpu_ratios+=("$(cpu_ratio "$app_line" "$floor_line")")
    echo "round $round: nginx-fcgi / floor = ${ratios[-1]} (from CPU per request: ${cpu_ratios[-1]})"
done
stop_floor
trap - EXIT
measure "standalone" "$STANDALONE" http "$HTTP_PID"

holder=""
stop_holder() { [ -n "$holder" ] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null; holder=""; }
trap stop_holder EXIT

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
measure "nginx-fcgi+${POLLS}polls" "$NGINX" http "$HTTP_PID"
measure "standalone+${POLLS}polls" "$STANDALONE" http "$HTTP_PID"
kill "$holder2" 2>/dev/null; wait "$holder2" 2>/dev/null || true
stop_holder

rm -f "$wrk_time"
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
    echo "| run | requests/s | p50 ms | p99 ms | max ms | socket errors | HTTP >= 400 | CPU µs per request | context switches per request | load |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for r in "${results[@]}"; do
        set -- $r
        name=$1
        shift
        declare -A kv=()
        cpu="" cs=""
        for pair in "$@"; do
            kv[${pair%%=*}]=${pair#*=}
            case ${pair%%=*} in
            *_us) cpu="$cpu ${pair%%_us=*} ${pair#*=}," ;;
            *_cs) cs="$cs ${pair%%_cs=*} ${pair#*=}," ;;
            esac
        done
        echo "| $name | ${kv[rps]} | ${kv[p50_ms]} | ${kv[p99_ms]} | ${kv[max_ms]} | ${kv[errors]} | ${kv[non200]} | ${cpu%,} | ${cs%,} | ${kv[load]} |"
    done
    echo
    echo "nginx -> magpie-http / floor, per round (the two alternated): ${ratios[*]}"
    echo "the same from CPU per request (floor's wrk + nginx + responder over the app's wrk + nginx + magpie-http + Redis): ${cpu_ratios[*]}"
    echo
    echo "Targets: >= 15,000 req/s and p99 <= 10 ms through nginx; p99 <= 50 ms with 1,000 polls pending;"
    echo "nginx -> magpie-http >= 0.8 x the floor (issue 19)."
    echo "floor = the same load through an nginx with the stack's own configuration to a FastCGI responder that"
    echo "does no work and handles connections as magpie-http does (bench/http/fcgi_floor.c): the most the"
    echo "nginx -> FastCGI path gives on this machine. CPU: user + system time of each process (nginx: its"
    echo "workers; magpie-http: all its threads; wrk: the generator) over the run, per request; context switches:"
    echo "voluntary + involuntary, all threads, per request (how often each slept and woke: fewer means more"
    echo "requests per wake-up); load: the 1-minute load average after it."
} >"$OUT"
echo "report: $OUT"
