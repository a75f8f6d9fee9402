# shellcheck shell=bash
# Sourced by the install scripts: the pins of scripts/tools.env and one way to
# install a pinned tool from the Rust crate registry.
# shellcheck source=scripts/tools.env
source "$(dirname "${BASH_SOURCE[0]}")/../tools.env"

# cargo_tool CRATE VERSION: installs CRATE at exactly VERSION unless
# `cargo install` already recorded that version and its binary is on PATH.
# (Asking the tools is unreliable: `cargo auditable --version` prints cargo's.)
cargo_tool() {
	local crate=$1 version=$2 have
	have=$(cargo install --list 2>/dev/null | awk -v c="$crate" '$1 == c {sub(/^v/, "", $2); sub(/:$/, "", $2); print $2}')
	if [[ "$have" == "$version" ]] && command -v "$crate" >/dev/null; then
		return 0
	fi
	printf 'install: %s %s (found: %s)\n' "$crate" "$version" "${have:-none}" >&2
	# A private target dir keeps tool builds out of the project's target/ and
	# off its build lock. Fat LTO and one codegen unit (some of these crates
	# ask for them) make a cold install minutes slower on two cores for a tool
	# that runs for seconds; these overrides win over the crates' manifests.
	local dir="${TMPDIR:-/tmp}/wordcount-tool-build/$crate"
	CARGO_TARGET_DIR="$dir" CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
		nice -n 10 cargo install --quiet --locked --version "$version" "$crate"
	rm -rf "$dir"
}
