#!/usr/bin/env bash
# Installs the pinned cargo-fuzz and checks that the nightly toolchain the
# fuzz build needs is there (libFuzzer's coverage instrumentation and
# `-Z` flags are nightly-only; the project's own build stays on stable).
# Skips everything already present, so calling it before each run is ~1 s.
# Bumping the pin: change it here and in docs/reliability.md.
set -euo pipefail

readonly CARGO_FUZZ=0.13.2

log() { printf 'fuzz install: %s\n' "$*" >&2; }

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
	# The offline CI machines ship nightly beside stable; GitHub's runners
	# do not, but can download it. Where neither works, say so instead of
	# failing obscurely later.
	log "installing the nightly toolchain (minimal profile)"
	if ! rustup toolchain install nightly --profile minimal >&2; then
		log "the nightly toolchain is missing and cannot be installed (rustup toolchain install nightly)"
		exit 1
	fi
fi

have=$(cargo install --list 2>/dev/null | awk '$1 == "cargo-fuzz" {sub(/^v/, "", $2); sub(/:$/, "", $2); print $2}')
if [[ "$have" == "$CARGO_FUZZ" ]] && command -v cargo-fuzz >/dev/null; then
	exit 0
fi
log "installing cargo-fuzz $CARGO_FUZZ (found: ${have:-none})"
# Private target dir: keeps the tool build out of the project's target/ and
# off its build lock, so other builds are not serialised behind it.
CARGO_TARGET_DIR="${TMPDIR:-/tmp}/wordcount-tool-build/cargo-fuzz" \
	CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
	nice -n 10 cargo install --quiet --locked --version "$CARGO_FUZZ" cargo-fuzz
rm -rf "${TMPDIR:-/tmp}/wordcount-tool-build/cargo-fuzz"
