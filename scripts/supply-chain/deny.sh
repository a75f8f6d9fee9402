#!/usr/bin/env bash
# Gate: cargo-deny (advisories, licences, bans, sources) against deny.toml.
# Uses the offline RustSec snapshot in ../shared when it exists, the live
# database otherwise. Exit status is cargo-deny's; the findings it prints say
# which crate broke which rule.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

python3 scripts/supply-chain/check-ignores.py deny.toml ||
	die "deny.toml ignores/skips break the policy above (docs/supply-chain.md#triage)"

# cargo-deny reads `cargo metadata`; the crates must be in the local registry
# cache. --locked: a gate never rewrites Cargo.lock.
cargo fetch --locked --quiet

net=()
if advisory_db; then
	export WORDCOUNT_ADVISORY_DBS="$ADVISORY_DBS"
	# --offline: no advisory fetch (the snapshot is all there is); yanked
	# status then comes from the local index cache that `cargo fetch` filled.
	net=(--offline)
	log "advisory database: offline snapshot $ADVISORY_SNAPSHOT"
else
	export WORDCOUNT_ADVISORY_DBS="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
	log "advisory database: live RustSec (fetched by cargo-deny into $WORDCOUNT_ADVISORY_DBS)"
fi

if ! cargo deny --locked "${net[@]}" --color never check --show-stats \
	advisories bans licenses sources; then
	die "cargo-deny refused the dependency tree: see the error[...] lines above (banned crate, advisory, licence or source); triage in docs/supply-chain.md"
fi
