#!/usr/bin/env bash
# A throwaway OCI registry on loopback for the release rehearsal.
#
#   scripts/deploy/registry.sh start|stop|status|addr
#
# Debian's docker-registry (distribution v2) with a config of our own: the
# packaged one listens on every interface and has a broken htpasswd block.
# Ours listens on 127.0.0.1 only, keeps its blobs under STATE_DIR, has no
# auth and no TLS (nothing but this machine can reach it). Deleting manifests
# is enabled so a test can move tags around freely.
#
# Environment: REGISTRY_PORT (default 5000), REGISTRY_STATE_DIR (default
# .tmp/registry-$PORT in the repository; gitignored). Two instances on two
# ports do not share anything, so `make signing-test` never disturbs the
# registry `make local-release` left for `make mock-prod`.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
PORT="${REGISTRY_PORT:-5000}"
STATE_DIR="${REGISTRY_STATE_DIR:-$ROOT/.tmp/registry-$PORT}"
ADDR="127.0.0.1:$PORT"
PIDFILE="$STATE_DIR/registry.pid"
LOG="$STATE_DIR/registry.log"


answers() { curl -fsS -o /dev/null --max-time 2 "http://$ADDR/v2/"; }

our_pid() {
	[[ -r "$PIDFILE" ]] || return 1
	local pid
	pid="$(cat "$PIDFILE")"
	# Only a process that is really our registry counts: PIDs get reused.
	[[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "docker-registry serve $STATE_DIR/config.yml" || return 1
	printf '%s\n' "$pid"
}

start() {
	if our_pid >/dev/null && answers; then
		log "already running on $ADDR (state in $STATE_DIR)"
		return 0
	fi
	if answers 2>/dev/null; then
		log "something else already answers on $ADDR; stop it or set REGISTRY_PORT"
		return 1
	fi
	command -v docker-registry >/dev/null || { log "docker-registry missing: run scripts/install.sh signing"; return 1; }
	mkdir -p "$STATE_DIR/data"
	cat >"$STATE_DIR/config.yml" <<-YAML
		version: 0.1
		log:
		  level: warn
		storage:
		  filesystem:
		    rootdirectory: $STATE_DIR/data
		  delete:
		    enabled: true
		http:
		  addr: $ADDR
		  headers:
		    X-Content-Type-Options: [nosniff]
	YAML
	# setsid: the registry outlives this script (make local-release leaves it
	# for make mock-prod) without holding the caller's terminal or job.
	setsid docker-registry serve "$STATE_DIR/config.yml" >"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 50); do
		if answers 2>/dev/null; then
			log "started on $ADDR (pid $(cat "$PIDFILE"), state in $STATE_DIR)"
			return 0
		fi
		sleep 0.1
	done
	log "did not answer on $ADDR within 5 s; its log:"
	cat "$LOG" >&2
	stop
	return 1
}

stop() {
	local pid
	if pid="$(our_pid)"; then
		kill "$pid"
		for _ in $(seq 50); do
			[[ -e "/proc/$pid" ]] || break
			sleep 0.1
		done
		log "stopped (pid $pid)"
	fi
	rm -f "$PIDFILE"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status)
	if our_pid >/dev/null && answers; then echo "running on $ADDR"; else echo "not running on $ADDR"; exit 1; fi
	;;
addr) printf '%s\n' "$ADDR" ;;
*) echo "usage: $0 start|stop|status|addr" >&2; exit 2 ;;
esac
