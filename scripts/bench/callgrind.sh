#!/usr/bin/env bash
# Userland instructions per cached GET /api/v1/counts, counted by callgrind:
# deterministic, so other load on the machine does not move the figure, and
# two builds can be compared to a fraction of a percent.
#
#   scripts/bench/callgrind.sh BINARY        e.g. target/release/wordcount
#
# Runs BINARY twice under callgrind on the sample source (JSON logs to a
# file, as in `make bench`): both runs start, turn ready and answer WARMUP
# requests (default 200); the second then answers REQUESTS more (default
# 2000) on one keep-alive connection. Both stop on SIGTERM. The difference
# of the two totals over REQUESTS is the cost of one cached request, access
# log line included, with start-up and shutdown cancelled out.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

binary=${1:?usage: $0 BINARY}
REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
PORT=${PORT:-18090}
ADMIN_PORT=$((PORT + 1))
apt_install_missing valgrind curl

work=$SCRATCH
server=
stop_server() { [[ -z $server ]] || kill -KILL "$server" 2>/dev/null; }
at_exit stop_server

# requests N: N GETs of the cached route over one keep-alive connection.
requests() {
	(($1 > 0)) || return 0
	for _ in $(seq "$1"); do
		printf 'url = "http://127.0.0.1:%s/api/v1/counts"\noutput = "/dev/null"\n' "$PORT"
	done >"$work/curl.conf"
	curl -sS --fail -K "$work/curl.conf"
}

# total N: total instructions of a run that answers WARMUP, then N requests.
total() {
	local out="$work/callgrind.$1"
	PORT=$PORT ADMIN_PORT=$ADMIN_PORT BIND_ADDRESS=127.0.0.1 SOURCE=sample LOG_FORMAT=json \
		valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" >"$work/log.$1" 2>"$work/valgrind.$1" &
	server=$!
	local tries=0
	until curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null; do
		((++tries < 600)) || {
			tail "$work/valgrind.$1" >&2
			die "$binary did not turn ready"
		}
		sleep 0.1
	done
	requests "$WARMUP"
	requests "$1"
	kill -TERM "$server"
	wait "$server" || die "$binary did not exit cleanly on SIGTERM"
	server=
	callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

base=$(total 0)
loaded=$(total "$REQUESTS")
echo "binary: $binary"
echo "instructions, start + $WARMUP warm-up requests + stop: $base"
echo "instructions, the same + $REQUESTS requests: $loaded"
echo "instructions per request: $(((loaded - base) / REQUESTS))"
