#!/usr/bin/env bash
# Starts the real service on 127.0.0.1, sends requests to every public route,
# scrapes the admin port's /metrics and checks it against
# deploy/observability/metrics.txt (obscheck.py exposition): every documented
# metric exists with its type and labels, no wordcount_* metric is
# undocumented, and the latency SLO's bucket boundary exists. Also checks
# that a JSON log line carries the fields Cloud Logging and the runbooks rely
# on. (`promtool check metrics` is not used: it only knows the classic text
# format and misreads OpenMetrics counter and info families.)
#
#   live-check.sh [BINARY]   default: `cargo build --locked` (debug profile)
#                            (a no-op after `cargo test` built the same profile)
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

binary="${1:-}"
if [[ -z "$binary" ]]; then
	# Ask cargo where it put the binary (CARGO_TARGET_DIR, build.target-dir).
	binary="$(cargo build --locked --quiet --bin wordcount --message-format=json-render-diagnostics |
		python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "wordcount":
        print(m["executable"])')"
	[[ -x "$binary" ]] || die "cargo build did not report the wordcount binary"
fi

work="$(mktemp -d -p "$SCRATCH")"
pids=()
# shellcheck disable=SC2317  # called on exit
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
at_exit cleanup

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

get() { # url [traceparent] -> body on stdout; status code in $work/status
	python3 - "$1" "$work/status" "${2:-}" <<'PY'
import sys, urllib.request, urllib.error
url, status_file, traceparent = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, headers={"traceparent": traceparent} if traceparent else {})
try:
    with urllib.request.urlopen(req, timeout=15) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except OSError:
    code, body = 0, b""
open(status_file, "w").write(str(code))
sys.stdout.buffer.write(body)
PY
}

start() { # name admin_port VAR=value... : starts an instance, waits for /healthz
	local name="$1" admin_port="$2"
	shift 2
	env "$@" ADMIN_PORT="$admin_port" BIND_ADDRESS=127.0.0.1 LOG_FORMAT=json RUST_LOG=info \
		"$binary" serve >"$work/$name.log" 2>"$work/$name.err" &
	pids+=($!)
	for _ in $(seq 1 100); do
		get "http://127.0.0.1:$admin_port/healthz" >/dev/null
		[[ "$(cat "$work/status")" == 200 ]] && return 0
		if ! kill -0 "${pids[-1]}" 2>/dev/null; then
			echo "live-check: the $name instance exited:" >&2
			cat "$work/$name.err" "$work/$name.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "live-check: the $name instance's /healthz never answered 200 within 10 s" >&2
	exit 1
}

# Families with labels appear only once something was counted, so two
# instances cover them all: one on the sample data (the happy path), one
# whose BigQuery endpoint is a closed local port (every query fails).
port="$(free_port)"
admin="$(free_port)"
start sample "$admin" WORD=the SOURCE=sample PORT="$port"
bq_port="$(free_port)"
bq_admin="$(free_port)"
closed="$(free_port)"
start bigquery "$bq_admin" WORD=tea SOURCE=bigquery PORT="$bq_port" BIGQUERY_PROJECT=observability-check \
	BIGQUERY_ENDPOINT="http://127.0.0.1:$closed" BIGQUERY_AUTH=none BIGQUERY_TIMEOUT=3

trace=4bf92f3577b34da6a3ce929d0e0e4736
get "http://127.0.0.1:$port/" "00-$trace-00f067aa0ba902b7-01" >/dev/null
for path in /api/v1/counts /hello /no-such-page; do get "http://127.0.0.1:$port$path" >/dev/null; done
get "http://127.0.0.1:$bq_port/api/v1/counts" >/dev/null
[[ "$(cat "$work/status")" == 503 ]] || {
	echo "live-check: the bigquery instance answered $(cat "$work/status"), expected 503 (no data, source down)" >&2
	exit 1
}
get "http://127.0.0.1:$admin/metrics" >"$work/sample.metrics"
[[ "$(cat "$work/status")" == 200 ]] || {
	echo "live-check: /metrics answered $(cat "$work/status")" >&2
	exit 1
}
get "http://127.0.0.1:$bq_admin/metrics" >"$work/bigquery.metrics"

status=0
python3 scripts/observability/obscheck.py exposition "$work/sample.metrics" "$work/bigquery.metrics" || status=1
grep -q '^wordcount_source_errors_total{source="bigquery",reason="transport"} ' "$work/bigquery.metrics" || {
	echo "live-check: a refused BigQuery connection was not counted as reason=transport" >&2
	status=1
}
grep -q '^wordcount_ready 0' "$work/bigquery.metrics" || {
	echo "live-check: an instance that never got data reports ready" >&2
	status=1
}

for p in "${pids[@]}"; do
	kill -TERM "$p"
	wait "$p" || {
		echo "live-check: an instance did not exit 0 on SIGTERM" >&2
		status=1
	}
done
pids=()

# The request with a traceparent must have logged its trace id in the fields
# Cloud Logging reads, next to the request id the runbooks search for.
python3 - "$work/sample.log" "$trace" <<'PY' || status=1
import json, sys
path, trace = sys.argv[1], sys.argv[2]
lines = [json.loads(l) for l in open(path) if l.strip()]
hits = [l for l in lines if l.get("route") == "index" and l.get("trace_id") == trace]
if not hits:
    sys.exit(f"live-check: no JSON log line for GET / with trace_id {trace}")
line = hits[0]
need = {"severity", "message", "request_id", "status", "latency_ms", "logging.googleapis.com/trace"}
missing = need - set(line)
if missing:
    sys.exit(f"live-check: request log line lacks {sorted(missing)}: {line}")
if trace not in line["logging.googleapis.com/trace"]:
    sys.exit(f"live-check: logging.googleapis.com/trace does not carry the incoming trace id: {line}")
print("ok   logs: the request line has severity, message, request_id and the incoming trace")
PY
if ((status == 0)); then echo "ok   live: /metrics of the running service matches metrics.txt"; fi
exit "$status"
