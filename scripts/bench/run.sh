#!/usr/bin/env bash
# Load benchmark: the service's cached GET /api/v1/counts against the
# minimal hyper server (examples/hello.rs), same tool, same settings, one
# after the other on 127.0.0.1. Prints requests/s, latency percentiles,
# RSS and the ratio to the ceiling. A script that prints figures, not a
# test: `make bench`. Results go into docs/performance.md by hand.
#
# Environment: CONNECTIONS (default "64 1024", the issue's two sizes), DURATION
# (default 5s), THREADS (wrk threads, default 2), ROUNDS (default 7: the
# service and the ceiling alternate, and the median ratio is reported, since
# single runs on a shared VM differ by up to 25 %; many short pairs gave
# steadier medians than a few long ones), PORT_BASE (default 18080).
#
# At the end it runs the cold path (testkit/src/bin/loadtest.rs cold-path): the
# same binary on SOURCE=bigquery against the fake, CACHE_TTL=2 s, loaded on
# the first of CONNECTIONS for DURATION: requests/s and BigQuery jobs per TTL.
set -euo pipefail
cd "$(dirname "$0")/../.."

CONNECTIONS=${CONNECTIONS:-64 1024}
DURATION=${DURATION:-5s}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-7}
PORT_BASE=${PORT_BASE:-18080}
SERVICE_PORT=$PORT_BASE
SERVICE_ADMIN=$((PORT_BASE + 1))
HELLO_PORT=$((PORT_BASE + 2))

for tool in wrk bc curl; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk bc curl >/dev/null; break; }
done

cargo build --release --locked --bin wordcount --example hello -p wordcount -p testkit --bin loadtest >&2
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

wait_http() {
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "no answer from $1" >&2
  return 1
}

# Logs go to a file, as a container runtime would collect them: the cost
# of writing one access-log line per request is part of what is measured.
PORT=$SERVICE_PORT ADMIN_PORT=$SERVICE_ADMIN BIND_ADDRESS=127.0.0.1 \
  target/release/wordcount >"$work/service.log" 2>&1 &
pids+=("$!"); service_pid=$!
target/release/examples/hello "127.0.0.1:$HELLO_PORT" >/dev/null 2>&1 &
pids+=("$!"); hello_pid=$!

wait_http "http://127.0.0.1:$SERVICE_ADMIN/readyz"
wait_http "http://127.0.0.1:$HELLO_PORT/"
curl -fsS -o /dev/null "http://127.0.0.1:$SERVICE_PORT/api/v1/counts"   # fill the cache

# wrk prints latency in us/ms/s; normalise to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

# run NAME URL PID CONNS ROUND -> prints one table row, remembers rps
declare -A RPS
run() {
  local name=$1 url=$2 pid=$3 conns=$4 round=$5 out rss_before rss_after rps p50 p99 p999 errors
  # Write back the log lines of the previous run now: left to the kernel,
  # the writeback of a few hundred MB would land in the next run, on
  # whichever server that is.
  sync
  rss_before=$(rss_kib "$pid")
  out=$(wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency -s scripts/bench/percentiles.lua "$url")
  rss_after=$(rss_kib "$pid")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "p50" {print $2}' <<<"$out")
  p99=$(awk '$1 == "p99" {print $2}' <<<"$out")
  p999=$(awk '$1 == "p99.9" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  RPS["$name/$conns/$round"]=$rps
  printf '| %s | %-24s | %5s | %10.0f | %8s | %8s | %8s | %6.1f | %6.1f | %s\n' \
    "$round" "$name" "$conns" "$rps" "$(to_ms "${p50}us")" "$(to_ms "${p99}us")" "$(to_ms "${p999}us")" \
    "$(bc -l <<<"$rss_before/1024")" "$(bc -l <<<"$rss_after/1024")" "${errors:-none}"
}

echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | xargs), $(uname -r)"
echo "wrk -t$THREADS -d$DURATION, 127.0.0.1, service and ceiling loaded one after the other, $ROUNDS rounds"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| r | target                   | conns |    req/s   | p50 ms   | p99 ms   | p99.9 ms | RSS0 MiB | RSS1 MiB | errors"
echo "|---|--------------------------|-------|------------|----------|----------|----------|--------|--------|-------"
hello_row() { run "hello (ceiling)" "http://127.0.0.1:$HELLO_PORT/" "$hello_pid" "$1" "$2"; }
counts_row() { run "wordcount /api/v1/counts" "http://127.0.0.1:$SERVICE_PORT/api/v1/counts" "$service_pid" "$1" "$2"; }
for round in $(seq 1 "$ROUNDS"); do
  for conns in $CONNECTIONS; do
    # Alternate which goes first, so a neighbour's burst on this shared
    # machine does not always land on the same side.
    if ((round % 2)); then hello_row "$conns" "$round"; counts_row "$conns" "$round"
    else counts_row "$conns" "$round"; hello_row "$conns" "$round"; fi
    [[ $round == 1 ]] && run "wordcount /hello" "http://127.0.0.1:$SERVICE_PORT/hello" "$service_pid" "$conns" "$round"
  done
done
echo
for conns in $CONNECTIONS; do
  ratios=()
  for round in $(seq 1 "$ROUNDS"); do
    ratios+=("$(bc -l <<<"${RPS["wordcount /api/v1/counts/$conns/$round"]} / ${RPS["hello (ceiling)/$conns/$round"]}")")
  done
  sorted=$(printf '%s\n' "${ratios[@]}" | sort -g)
  printf 'ratio /api/v1/counts : ceiling at %s connections: median %.2f of %s rounds (%s) (target >= 0.80)\n' "$conns" \
    "$(sed -n "$(((ROUNDS + 1) / 2))p" <<<"$sorted")" "$ROUNDS" "$(printf '%.2f ' "${ratios[@]}" | sed 's/ $//')"
done
echo "access-log lines written during the run: $(wc -l <"$work/service.log")"

echo
# wrk's duration format ("10s") -> whole seconds for the harness.
seconds=${DURATION%s}
[[ $seconds =~ ^[0-9]+$ ]] || seconds=10
first_conns=${CONNECTIONS%% *}
echo "cold path: testkit loadtest cold-path, $first_conns connections, ${seconds} s, CACHE_TTL=2 s, BigQuery fake"
LOADTEST_BIN=target/release/wordcount LOADTEST_SECONDS=$seconds LOADTEST_CONNECTIONS=$first_conns \
  target/release/loadtest cold-path
