#!/usr/bin/env bash
# make dev: every instance of deploy/instances.toml on this machine, with only
# cargo: build once, then one process per WORD on 127.0.0.1 with its own ports
# (the: 8080/9090, and: 8081/9091, ... the same ports as compose.yaml).
# Logs are prefixed with the word. Ctrl-C stops them all (each drains and
# exits 0); if one exits on its own, the others are stopped too.
#
#   DEV_SOURCE=sample (default) | file | bigquery   data source of every instance
#       file:     DATA_FILE defaults to data/shakespeare.csv.gz
#       bigquery: pass BIGQUERY_PROJECT, and BIGQUERY_ENDPOINT/BIGQUERY_AUTH=none
#                 for the emulator (see docs/deploy.md)
#   DEV_PORT_OFFSET=N  add N to every port (when 8080/9090... are taken)
#   DEV_CHECK=1   start, check every instance answers with its own word, stop
#                 (a smoke test of this script; exit 0 only if all passed)
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

source="${DEV_SOURCE:-sample}"
case "$source" in
sample) ;;
file) export DATA_FILE="${DATA_FILE:-$ROOT/data/shakespeare.csv.gz}" ;;
bigquery) : "${BIGQUERY_PROJECT:?DEV_SOURCE=bigquery needs BIGQUERY_PROJECT}" ;;
*) log "DEV_SOURCE must be sample, file or bigquery"; exit 2 ;;
esac

log "cargo build --release --locked"
cargo build --release --locked --quiet
bin="$ROOT/target/release/wordcount"

offset="${DEV_PORT_OFFSET:-0}"
mapfile -t instances < <("$(python_bin)/python" scripts/manifests/generate.py --dev-ports |
	awk -v o="$offset" '{print $1, $2 + o, $3 + o}')
pids=()
# shellcheck disable=SC2317  # called by the EXIT trap
stop() {
	local pid
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	pids=()
}
at_exit stop
trap 'log "stopping"; exit 0' INT TERM

for line in "${instances[@]}"; do
	read -r word port admin <<<"$line"
	WORD="$word" PORT="$port" ADMIN_PORT="$admin" BIND_ADDRESS=127.0.0.1 \
		SOURCE="$source" LOG_FORMAT="${LOG_FORMAT:-text}" \
		"$bin" serve > >(sed -u "s/^/[$word] /") 2>&1 &
	pids+=("$!")
done

ready() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; }
for line in "${instances[@]}"; do
	read -r word port admin <<<"$line"
	deadline=$((SECONDS + 30))
	until ready "http://127.0.0.1:$admin/readyz"; do
		((SECONDS < deadline)) || { log "$word did not become ready on :$admin within 30 s"; exit 1; }
		sleep 0.2
	done
	printf 'dev: %-8s http://127.0.0.1:%s/   admin http://127.0.0.1:%s/metrics\n' "$word" "$port" "$admin" >&2
done

if [[ "${DEV_CHECK:-}" == 1 ]]; then
	for line in "${instances[@]}"; do
		read -r word port _ <<<"$line"
		got="$(python3 -c '
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    print(json.load(r)["word"])' "http://127.0.0.1:$port/api/v1/counts")"
		[[ "$got" == "$word" ]] || { log "FAIL: :$port answered word '$got', want '$word'"; exit 1; }
		log "ok: :$port answers word=$word"
	done
	exit 0
fi

log "${#pids[@]} instances running ($source); Ctrl-C stops them all"
# Any instance exiting (crash, bad config) ends the session for all of them.
wait -n "${pids[@]}" || true
log "an instance exited; stopping the others"
exit 1
