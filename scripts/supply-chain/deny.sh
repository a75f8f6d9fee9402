#!/usr/bin/env bash
# Gate: cargo-deny (advisories, licences, bans, sources) against deny.toml.
# Uses the offline RustSec snapshot in ../shared when it exists, the live
# database otherwise. Exit status is cargo-deny's; the findings it prints say
# which crate broke which rule.
set -euo pipefail
export SC_GATE=deny
# shellcheck source=scripts/supply-chain/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$SC_ROOT"

python3 "$SC_DIR/check-ignores.py" deny.toml ||
	sc_fail "deny.toml ignores/skips break the policy above (docs/supply-chain.md#triage)"

# cargo-deny reads `cargo metadata`; the crates must be in the local registry
# cache. --locked: a gate never rewrites Cargo.lock.
cargo fetch --locked --quiet

net=()
if sc_offline_db; then
	sc_prepare_db
	export WORDCOUNT_ADVISORY_DBS="$SC_DB_ROOT"
	# --offline: no advisory fetch (the snapshot is all there is); yanked
	# status then comes from the local index cache that `cargo fetch` filled.
	net=(--offline)
	sc_log "advisory database: offline snapshot $SC_SHARED_DB"
else
	export WORDCOUNT_ADVISORY_DBS="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
	sc_log "advisory database: live RustSec (fetched by cargo-deny into $WORDCOUNT_ADVISORY_DBS)"
fi

if ! cargo deny --locked "${net[@]}" --color never check --show-stats \
	advisories bans licenses sources; then
	sc_fail "cargo-deny refused the dependency tree: see the error[...] lines above (banned crate, advisory, licence or source); triage in docs/supply-chain.md"
fi
