#!/usr/bin/env bash
# Installs the pinned supply-chain tools, skipping every tool whose pinned
# version is already present, so calling it before each gate costs ~1 s.
#
# Cargo tools go to ~/.cargo/bin (like cargo itself); semgrep comes from the
# project's one hash-locked Python environment (scripts/lib/python.sh, pinned
# in scripts/pyproject.toml). Pins: scripts/tools.env.
set -euo pipefail

scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The gate scripts ask for the semgrep binary with `install.sh --print-semgrep`.
if [[ "${1:-}" == "--print-semgrep" ]]; then
	printf '%s\n' "$("$scripts/lib/python.sh")/semgrep"
	exit 0
fi

# shellcheck source=scripts/lib/cargo-tool.sh
source "$scripts/lib/cargo-tool.sh"

cargo_tool cargo-deny "$CARGO_DENY"
cargo_tool cargo-audit "$CARGO_AUDIT"
cargo_tool cargo-auditable "$CARGO_AUDITABLE"
cargo_tool cargo-cyclonedx "$CARGO_CYCLONEDX"
cargo_tool cargo-sbom "$CARGO_SBOM"

"$scripts/lib/python.sh" >/dev/null
