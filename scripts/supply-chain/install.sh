#!/usr/bin/env bash
# Installs the pinned supply-chain tools, skipping every tool whose pinned
# version is already present, so calling it before each gate costs ~1 s.
#
# Cargo tools go to ~/.cargo/bin (like cargo itself); semgrep comes from the
# project's one hash-locked Python environment (scripts/lib/python.sh, pinned
# in scripts/pyproject.toml). Bumping a pin: change it here and in
# docs/supply-chain.md.
set -euo pipefail

readonly CARGO_DENY=0.20.2
readonly CARGO_AUDIT=0.22.2
readonly CARGO_AUDITABLE=0.7.7
readonly CARGO_CYCLONEDX=0.5.9
readonly CARGO_SBOM=0.10.0

scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The gate scripts ask for the semgrep binary with `install.sh --print-semgrep`.
if [[ "${1:-}" == "--print-semgrep" ]]; then
	printf '%s\n' "$("$scripts/lib/python.sh")/semgrep"
	exit 0
fi

log() { printf 'supply-chain install: %s\n' "$*" >&2; }

# What `cargo install` recorded: "<crate> v<version>:" lines. (Asking the
# tools is unreliable: `cargo auditable --version` prints cargo's version.)
installed=$(cargo install --list 2>/dev/null | awk '/^[^ ]/ {sub(/^v/, "", $2); sub(/:$/, "", $2); print $1, $2}')

# cargo_tool CRATE VERSION: install unless exactly VERSION is installed.
cargo_tool() {
	local crate=$1 version=$2 have
	have=$(awk -v c="$crate" '$1 == c {print $2}' <<<"$installed")
	if [[ "$have" == "$version" ]] && command -v "$crate" >/dev/null; then
		return 0
	fi
	log "installing $crate $version (found: ${have:-none})"
	# A private target dir keeps these builds out of the project's target/
	# (and its cache keys) and lets parallel installs not block on its lock.
	# Fat LTO and one codegen unit (some of these crates ask for them) make
	# a cold CI install several minutes slower on two cores for a tool that
	# runs for seconds; the config overrides win over the crates' manifests.
	CARGO_TARGET_DIR="${TMPDIR:-/tmp}/wordcount-tool-build/$crate" \
		CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
		nice -n 10 cargo install --quiet --locked --version "$version" "$crate"
	rm -rf "${TMPDIR:-/tmp}/wordcount-tool-build/$crate"
}

cargo_tool cargo-deny "$CARGO_DENY"
cargo_tool cargo-audit "$CARGO_AUDIT"
cargo_tool cargo-auditable "$CARGO_AUDITABLE"
cargo_tool cargo-cyclonedx "$CARGO_CYCLONEDX"
cargo_tool cargo-sbom "$CARGO_SBOM"

"$scripts/lib/python.sh" >/dev/null
