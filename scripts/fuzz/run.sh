#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ and runs each for FUZZ_SECONDS.
#
#   run.sh smoke [TARGET...]   CI gate: every target from its seed corpus,
#                              FUZZ_SECONDS=20 each, sanitizer none
#   run.sh long  [TARGET...]   local: FUZZ_SECONDS=300 each, AddressSanitizer,
#                              a corpus that persists under fuzz/target/corpus
#
# Any crash, panic, leak of the RSS limit or slow input fails the run; the
# input is written to fuzz/artifacts/<target>/ (see docs/reliability.md for
# turning it into a regression seed). The seed corpus in fuzz/corpus/ is
# only read: new inputs go to a scratch (smoke) or local (long) directory,
# so a run never changes tracked files.
#
# Sanitizer: the smoke run builds without one. Our code has no `unsafe`, so
# AddressSanitizer could only catch memory errors inside dependencies
# (hyper, httparse, bytes, serde_json), which their own OSS-Fuzz projects
# fuzz with it; what the gate looks for here - panics, failed assertions
# on our contracts, overflow (debug assertions are on), hangs and memory
# blow-ups - needs no sanitizer. Without it the cold build is about a
# third shorter and each second of fuzzing runs several times more inputs.
# `make fuzz` keeps ASan on for the long runs (FUZZ_SANITIZER overrides).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

mode=${1:-smoke}
shift || true
case "$mode" in
smoke) seconds=${FUZZ_SECONDS:-20} sanitizer=${FUZZ_SANITIZER:-none} ;;
long) seconds=${FUZZ_SECONDS:-300} sanitizer=${FUZZ_SANITIZER:-address} ;;
*)
	echo "usage: $0 smoke|long [TARGET...]" >&2
	exit 2
	;;
esac
all_targets=(http_request traceparent bigquery_response config csv_loader json_object)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")

scripts/install.sh fuzz

# cargo fuzz has no --locked: check fuzz/Cargo.lock is current (and fetch)
# with cargo itself first, so the build cannot silently re-resolve.
cargo fetch --locked --manifest-path fuzz/Cargo.toml --quiet

# 16 codegen units instead of cargo-fuzz's 1: a much shorter cold build on
# two cores, for slightly slower generated code. A fixed WORDCOUNT_COMMIT
# keeps build.rs from rebuilding the service whenever HEAD moves.
build_flags=(--sanitizer "$sanitizer" --codegen-units 16)
(cd fuzz && WORDCOUNT_COMMIT=fuzz nice -n 5 cargo +nightly fuzz build "${build_flags[@]}")
bin=fuzz/target/x86_64-unknown-linux-gnu/release

scratch="$(mktemp -d -p "$SCRATCH")"

failed=()
for target in "${targets[@]}"; do
	[[ -d fuzz/corpus/$target ]] || {
		echo "fuzz: no seed corpus fuzz/corpus/$target" >&2
		exit 2
	}
	if [[ $mode == smoke ]]; then
		corpus=$scratch/$target
	else
		corpus=fuzz/target/corpus/$target
	fi
	mkdir -p "$corpus" "fuzz/artifacts/$target"
	args=(
		"$corpus" "fuzz/corpus/$target"
		-max_total_time="$seconds"
		# A single input may take 10 s (the harness itself gives up on a
		# hung connection after 5 s) and the process 2 GiB.
		-timeout=10 -rss_limit_mb=2048
		-artifact_prefix="fuzz/artifacts/$target/"
		-print_final_stats=1
	)
	[[ -f fuzz/dict/$target.dict ]] && args+=(-dict="fuzz/dict/$target.dict")
	# Room for requests past hyper's 16 KiB header buffer (431 paths).
	[[ $target == http_request ]] && args+=(-max_len=24576)
	printf '\n--- fuzz %s: %ss, sanitizer %s\n' "$target" "$seconds" "$sanitizer"
	log=$scratch/$target.log
	if "$bin/$target" "${args[@]}" >"$log" 2>&1; then
		grep -E '^(#[0-9]+\s+DONE|stat::number_of_executed_units|Done )' "$log" || true
	else
		failed+=("$target")
		# The panic message (before the backtrace), libFuzzer's verdict
		# (crash, timeout, OOM) and from SUMMARY on the reproducer's path
		# and bytes; the whole log would be pages of backtrace and NEW lines.
		grep -m1 -A6 'panicked at' "$log" || true
		grep -E '^==[0-9]+== ERROR' "$log" || true
		sed -n '/^SUMMARY: /,$p' "$log"
	fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
	printf '\nfuzz: FAILED: %s (reproducers in fuzz/artifacts/<target>/; replay with %s/<target> FILE)\n' \
		"${failed[*]}" "$bin" >&2
	exit 1
fi
printf '\nfuzz: %s target(s) ran %ss each without a finding\n' "${#targets[@]}" "$seconds"
