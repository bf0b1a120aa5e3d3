#!/usr/bin/env bash
# bench/http/ab.sh -- A/B of magpie-http's FastCGI path on one stack: bench/http/run.sh with magpie-http
# binary A behind site conf A, then B behind site conf B, alternating (A B B A A B ...), only magpie-http
# and nginx's site conf swapped between runs. Each run.sh measures its own floor behind the same nginx
# conf, so each run's ratio is honest for its variant.
#
#   bench/http/ab.sh --run DIR --a BIN SITE_CONF --b BIN SITE_CONF [--pairs N] [--out DIR]
#
#   --run DIR        the stack (scripts/dev up); its magpie-http and nginx site conf are replaced for each
#                    run and the last run's are left in place ('scripts/dev down' stops it; 'up' restores)
#   --a / --b        a magpie-http binary and a rendered site conf (e.g. the stack's own, edited)
#   --pairs N        how many A/B pairs (default 2: A B B A)
#   --out DIR        where the run.sh reports go (default bench/results/ab-<date>/)
# run.sh's environment (WRK_DURATION, POLLS, ROUNDS, ...) applies to every run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN="" PAIRS=2 OUT=""
declare -A BIN SITE
while [ $# -gt 0 ]; do
    case "$1" in
    --run) RUN=$2; shift ;;
    --a) BIN[A]=$2; SITE[A]=$3; shift 2 ;;
    --b) BIN[B]=$2; SITE[B]=$3; shift 2 ;;
    --pairs) PAIRS=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
    shift
done
[ -n "$RUN" ] && [ -n "${BIN[A]:-}" ] && [ -n "${BIN[B]:-}" ] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
RUN=$(cd "$RUN" && pwd)
OUT=${OUT:-$REPO/bench/results/ab-$(date -u +%Y%m%d-%H%M)}
mkdir -p "$OUT"
# shellcheck disable=SC1091
. "$RUN/dev.env"

# Stop the stack's magpie-http, put SITE in place for nginx, start BIN the way scripts/dev does.
swap() { # BIN SITE
    local pid
    pid=$(cat "$RUN/pids/http.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    cp "$2" "$RUN/nginx/magpie-site.conf"
    nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -s reload
    # Named magpie-http, so that 'scripts/dev down' and status know it by its pid file.
    mkdir -p "$RUN/ab-bin"
    cp "$1" "$RUN/ab-bin/magpie-http"
    (
        cd "$RUN/cores/http" 2>/dev/null || cd "$RUN"
        MAGPIE_LOG_FILE="$RUN/logs/http.log" setsid "$RUN/ab-bin/magpie-http" -c "$RUN/magpie.conf" </dev/null \
            >>"$RUN/logs/http.out" 2>&1 &
        echo $! >"$RUN/pids/http.pid"
    )
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$HTTP_PORT/healthz" 2>/dev/null && break
        sleep 0.1
    done
    sleep 2 # nginx's old workers finish; the machine settles
}

order=()
for ((i = 1; i <= PAIRS; i++)); do
    if ((i % 2)); then order+=(A B); else order+=(B A); fi
done
n=0
for v in "${order[@]}"; do
    n=$((n + 1))
    swap "${BIN[$v]}" "${SITE[$v]}"
    echo "== run $n: $v (${BIN[$v]}, ${SITE[$v]}) load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$HERE/run.sh" --run "$RUN" --out "$OUT/$n-$v.md" | grep -E '^(round|nginx-fcgi |floor)' || true
done
echo "reports: $OUT"
