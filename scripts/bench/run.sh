#!/usr/bin/env bash
# Request-path benchmark: the service's cached GET /api/v1/counts against the
# minimal hyper server (examples/hello.rs), and optionally against the same
# service built from another commit, loaded in turn with wrk on 127.0.0.1.
# A script that prints figures, not a test: `make bench`. Results go into
# docs/performance.md by hand.
#
# Pinned mode (the default, PINNED=1, needs 2 CPUs): the server runs on CPU 0
# and wrk (one thread) on CPU 1, so the server's CPU time per request is its
# own and not a share of two cores with wrk. Each run reports requests/s,
# latency percentiles and the server's CPU time per request (user + system,
# from /proc/PID/stat); the summary gives per-target medians and the median
# per-round ratio of CPU per request to the minimal server's.
#
# Environment: CONNECTIONS (default "64 1024"), DURATION (default 5s), ROUNDS
# (default 7; targets alternate order each round, the medians are reported),
# PINNED (default 1; 0 shares both cores with wrk -t2), BASE (a git revision:
# also measure the service built from it, side by side), PORT_BASE (18080).
#
# At the end it runs the cold path (testkit/src/bin/loadtest/cold_path.rs): the
# same binary on SOURCE=bigquery against the fake, CACHE_TTL=2 s, loaded on
# the first of CONNECTIONS for DURATION: requests/s and BigQuery jobs per TTL.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

CONNECTIONS=${CONNECTIONS:-64 1024}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-7}
PINNED=${PINNED:-1}
BASE=${BASE:-}
PORT_BASE=${PORT_BASE:-18080}

apt_install_missing wrk bc curl util-linux valgrind

if [[ $PINNED == 1 ]] && (($(nproc) >= 2)); then
  SERVER_CPU=(taskset -c 0) WRK=(taskset -c 1 wrk -t1)
else
  PINNED=0 SERVER_CPU=() WRK=(wrk -t2)
fi

# Binaries are copied aside under target/bench, as each build replaces
# target/release/wordcount. The base commit builds from an exported tree
# (outside this workspace) into the same target directory, so only the
# crates that differ compile.
bin_dir=target/bench
mkdir -p "$bin_dir"
# The service alone first: building an example with it would unify the
# dev-dependencies' features (tokio's test-util) into the measured binary.
cargo build --release --locked --bin wordcount >&2
cp target/release/wordcount "$bin_dir/wordcount"
cargo build --release --locked --example hello >&2
cargo build --release --locked -p testkit --bin loadtest >&2
if [[ -n $BASE ]]; then
  base_rev=$(git rev-parse --short=12 "$BASE^{commit}")
  src="$SCRATCH/src-$base_rev"
  mkdir -p "$src"
  git archive "$base_rev" | tar -x -C "$src"
  (cd "$src" && WORDCOUNT_COMMIT=$base_rev CARGO_TARGET_DIR=$ROOT/target cargo build --release --locked --bin wordcount >&2)
  cp target/release/wordcount "$bin_dir/wordcount-$base_rev"
fi

work=$SCRATCH
pids=()
stop_servers() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
at_exit stop_servers

wait_http() {
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "no answer from $1" >&2
  return 1
}

# Targets: name -> URL and PID. Every server gets its own ports; the
# services log to a file, as a container runtime would collect them: the cost
# of writing one access-log line per request is part of what is measured.
declare -A URL PID BIN
port=$PORT_BASE
start_service() {
  local name=$1 bin=$2
  PORT=$port ADMIN_PORT=$((port + 1)) BIND_ADDRESS=127.0.0.1 \
    "${SERVER_CPU[@]}" "$bin" >"$work/$name.log" 2>&1 &
  pids+=("$!") PID[$name]=$! BIN[$name]=$bin
  wait_http "http://127.0.0.1:$((port + 1))/readyz"
  URL[$name]="http://127.0.0.1:$port/api/v1/counts"
  curl -fsS -o /dev/null "${URL[$name]}" # fill the cache
  port=$((port + 2))
}
targets=(hello wordcount)
"${SERVER_CPU[@]}" target/release/examples/hello "127.0.0.1:$port" >/dev/null 2>&1 &
pids+=("$!") PID[hello]=$! URL[hello]="http://127.0.0.1:$port/"
wait_http "${URL[hello]}"
port=$((port + 2))
start_service wordcount "$bin_dir/wordcount"
if [[ -n $BASE ]]; then
  start_service "base-$base_rev" "$bin_dir/wordcount-$base_rev"
  targets+=("base-$base_rev")
fi

# wrk prints latency in us/ms/s; normalise to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}
# CPU time (user + system) of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# run TARGET CONNS ROUND -> prints one table row, remembers req/s and CPU/request
declare -A RPS CPU
run() {
  local name=$1 conns=$2 round=$3 out ticks requests rps p50 p99 p999 errors
  # Write back the previous run's log lines now, not during this run.
  sync
  ticks=$(cpu_ticks "${PID[$name]}")
  out=$("${WRK[@]}" -c"$conns" -d"$DURATION" --latency -s scripts/bench/percentiles.lua "${URL[$name]}")
  ticks=$(($(cpu_ticks "${PID[$name]}") - ticks))
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "p50" {print $2}' <<<"$out")
  p99=$(awk '$1 == "p99" {print $2}' <<<"$out")
  p999=$(awk '$1 == "p99.9" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  RPS[$name/$conns/$round]=$rps
  CPU[$name/$conns/$round]=$(bc -l <<<"$ticks * $TICK_US / $requests")
  printf '| %s | %-22s | %5s | %9.0f | %6.2f | %8s | %8s | %8s | %s\n' "$round" "$name" "$conns" "$rps" \
    "${CPU[$name/$conns/$round]}" "$(to_ms "${p50}us")" "$(to_ms "${p99}us")" "$(to_ms "${p999}us")" "${errors:-none}"
}

median() { sort -g | awk '{v[NR] = $1} END {printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | xargs), $(uname -r)"
if ((PINNED)); then echo "pinned: servers on CPU 0, wrk -t1 on CPU 1"; else echo "shared: servers and wrk -t2 on all CPUs"; fi
echo "wrk -d$DURATION on 127.0.0.1, targets in turn, $ROUNDS rounds; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| r | target                 | conns |   req/s   | µs CPU/req | p50 ms | p99 ms | p99.9 ms | errors"
echo "|---|------------------------|-------|-----------|------------|--------|--------|----------|-------"
for round in $(seq 1 "$ROUNDS"); do
  for conns in $CONNECTIONS; do
    # Rotate which goes first, so a neighbour's burst on this shared machine
    # does not always land on the same target.
    n=${#targets[@]}
    for i in $(seq 0 $((n - 1))); do run "${targets[$(((i + round) % n))]}" "$conns" "$round"; done
  done
done
echo
for conns in $CONNECTIONS; do
  echo "at $conns connections, medians of $ROUNDS rounds:"
  for name in "${targets[@]}"; do
    rps=$(for r in $(seq 1 "$ROUNDS"); do echo "${RPS[$name/$conns/$r]}"; done | median)
    cpu=$(for r in $(seq 1 "$ROUNDS"); do echo "${CPU[$name/$conns/$r]}"; done | median)
    ratio=$(for r in $(seq 1 "$ROUNDS"); do bc -l <<<"${CPU[$name/$conns/$r]} / ${CPU[hello/$conns/$r]}"; done | median)
    printf '  %-22s %9.0f req/s  %6.2f µs CPU/request  %5.2fx the minimal server\n' "$name" "$rps" "$cpu" "$ratio"
  done
done
echo "access-log lines written during the run: $(cat "$work"/*.log | wc -l)"
echo
echo "instructions per cached request (callgrind, scripts/bench/callgrind.sh):"
for name in "${targets[@]:1}"; do
  printf '  %-22s %s\n' "$name" "$(scripts/bench/callgrind.sh "${BIN[$name]}" | awk -F': ' '/per request/ {print $2}')"
done

echo
# wrk's duration format ("10s") -> whole seconds for the harness.
seconds=${DURATION%s}
[[ $seconds =~ ^[0-9]+$ ]] || seconds=10
first_conns=${CONNECTIONS%% *}
echo "cold path: testkit loadtest cold-path, $first_conns connections, ${seconds} s, CACHE_TTL=2 s, BigQuery fake"
LOADTEST_BIN=$bin_dir/wordcount LOADTEST_SECONDS=$seconds LOADTEST_CONNECTIONS=$first_conns \
  target/release/loadtest cold-path
