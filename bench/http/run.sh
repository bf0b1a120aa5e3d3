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
} >"$OUT"
echo "report: $OUT"
