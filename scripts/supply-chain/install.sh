#!/usr/bin/env bash
# Installs the pinned supply-chain tools, skipping every tool whose pinned
# version is already present, so calling it before each gate costs ~1 s.
#
# Cargo tools go to ~/.cargo/bin (like cargo itself); semgrep goes to its own
# venv under ~/.cache keyed by version, so it never touches the system Python
# and a version bump gets a fresh venv instead of an in-place re-resolve.
# Bumping a pin: change it here and in docs/supply-chain.md.
set -euo pipefail

readonly CARGO_DENY=0.20.2
readonly CARGO_AUDIT=0.22.2
readonly CARGO_AUDITABLE=0.7.7
readonly CARGO_CYCLONEDX=0.5.9
readonly CARGO_SBOM=0.10.0
readonly SEMGREP=1.182.0   # 1.185 needs a certifi the mirrored PyPI lacks

# Semgrep venv location; the gate scripts ask for the binary with
# `install.sh --print-semgrep`.
SEMGREP_VENV="${SEMGREP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wordcount/semgrep-$SEMGREP}"

if [[ "${1:-}" == "--print-semgrep" ]]; then
	printf '%s\n' "$SEMGREP_VENV/bin/semgrep"
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

semgrep_have=$("$SEMGREP_VENV/bin/pip" show semgrep 2>/dev/null | awk '/^Version:/ {print $2}' || true)
if [[ "$semgrep_have" != "$SEMGREP" ]]; then
	log "installing semgrep $SEMGREP into $SEMGREP_VENV (found: ${semgrep_have:-none})"
	rm -rf "$SEMGREP_VENV"
	python3 -m venv "$SEMGREP_VENV"
	"$SEMGREP_VENV/bin/pip" install --quiet --disable-pip-version-check "semgrep==$SEMGREP"
fi
