#!/usr/bin/env bash
# make loadtest: the four scenarios of testkit/src/bin/loadtest/ (cold path,
# 10k idle connections, upstream faults under load, rolling restart) against
# the real release binary. docs/reliability.md describes models and targets.
#
# Usage: scripts/loadtest/run.sh [all|cold-path|idle-connections|faults|rolling-restart]
# Environment:
#   LOADTEST_BIN      binary under test; unset: `cargo build --release` and
#                     target/release/wordcount (CI passes the static binary
#                     `make static` already built)
#   LOADTEST_PROFILE  cargo profile of the harness itself: dev (default; CI's
#                     `cargo test` has built its dependencies, so only the
#                     harness compiles) or release (steadier client-side
#                     figures, `make bench`)
#   LOADTEST_HELLO    bare hyper for the idle-connections bound; unset:
#                     target/release/examples/hello, built here
set -euo pipefail
LOG_NAME=loadtest
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

scenario=${1:-all}
profile=${LOADTEST_PROFILE:-dev}
case $profile in
dev) dir=debug ;;
release) dir=release ;;
*)
	log "LOADTEST_PROFILE must be dev or release"
	exit 2
	;;
esac

bin=${LOADTEST_BIN:-}
if [[ -z $bin ]]; then
	cargo build --release --locked --bin wordcount
	bin=target/release/wordcount
fi
# Bare hyper, the base of the idle-connections bound (built on its own: with
# the service in one command, cargo would unify their features).
cargo build --release --locked --example hello
cargo build --locked --profile "$profile" -p testkit --bin loadtest


# 10,000 connections need that many descriptors on each side; the harness
# and the service it starts inherit this limit. The harness reports (and
# fails) if the hard limit is too low; it never scales the scenario down.
ulimit -n "$(ulimit -Hn)" || log "cannot raise the descriptor limit"

LOADTEST_BIN=$bin exec "target/$dir/loadtest" "$scenario"
