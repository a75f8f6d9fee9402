#!/usr/bin/env bash
# Installs the pinned cargo-fuzz and checks that the nightly toolchain the
# fuzz build needs is there (libFuzzer's coverage instrumentation and
# `-Z` flags are nightly-only; the project's own build stays on stable).
# Skips everything already present, so calling it before each run is ~1 s.
# The pin is in scripts/tools.env.
set -euo pipefail

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

# shellcheck source=scripts/lib/cargo-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/cargo-tool.sh"
cargo_tool cargo-fuzz "$CARGO_FUZZ"
