#!/usr/bin/env bash
# Gate: cargo-audit, twice.
#   audit.sh lock  - Cargo.lock: what we resolve today.
#   audit.sh bin   - the cargo-auditable static release binary: what we ship.
#                    It carries its own dependency list (.dep-v0 section), so
#                    this also works on a binary pulled out of a released image.
# Advisory ignores come from deny.toml (one list for both tools). Warnings
# (unmaintained, unsound, yanked) fail too, matching the deny.toml policy.
set -euo pipefail
export SC_GATE="audit ${1:-}"
# shellcheck source=scripts/supply-chain/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$SC_ROOT"

mode="${1:-}"
readonly TRIPLE=x86_64-unknown-linux-gnu
BIN="${AUDIT_BIN:-target/$TRIPLE/release/wordcount}"

opts=(--color never --deny warnings)
if sc_offline_db; then
	sc_prepare_db
	# --no-fetch: the snapshot is all there is. Yanked status needs the
	# crates.io index, which cargo-deny already checks; skip it here.
	opts+=(--db "$SC_DB" --no-fetch --no-yanked)
	sc_log "advisory database: offline snapshot $SC_SHARED_DB"
else
	sc_log "advisory database: live RustSec (fetched by cargo-audit)"
fi
while IFS= read -r id; do
	[[ -n "$id" ]] && opts+=(--ignore "$id")
done < <(python3 "$SC_DIR/check-ignores.py" --print-ids deny.toml)

has_audit_data() { readelf -S "$1" 2>/dev/null | grep -q '\.dep-v0'; }

case "$mode" in
lock)
	cargo audit "${opts[@]}" --file Cargo.lock ||
		sc_fail "Cargo.lock resolves a crate version with a RustSec advisory (see the Crate/ID/Solution lines above); upgrade it or ignore it in deny.toml with a reason and a revisit date"
	;;
bin)
	if [[ -z "${AUDIT_BIN:-}" ]]; then
		# Always (re)build: cargo knows whether the binary is current, and a
		# binary older than Cargo.lock would audit yesterday's tree. The image
		# engineer's `make static` is the one definition of this build; the
		# same command is the fallback while that target does not exist.
		if make -n static >/dev/null 2>&1; then
			sc_log "building $BIN with 'make static'"
			make --no-print-directory static
		else
			sc_log "building $BIN with cargo auditable (no 'make static' target)"
			RUSTFLAGS='-C target-feature=+crt-static' nice -n 10 \
				cargo auditable build --release --locked --target "$TRIPLE"
		fi
	fi
	[[ -x "$BIN" ]] || sc_fail "$BIN does not exist"
	# Without the .dep-v0 section cargo-audit falls back to guessing from
	# panic strings; a binary built with plain `cargo build` would then
	# "pass" while auditing almost nothing.
	has_audit_data "$BIN" ||
		sc_fail "$BIN has no cargo-auditable data (.dep-v0 section): it was not built with cargo auditable (a later plain 'cargo build' replaces the binary silently); rebuild it with 'make static'"
	cargo audit "${opts[@]}" bin "$BIN" ||
		sc_fail "the release binary $BIN embeds a crate version with a RustSec advisory (see above)"
	;;
*)
	echo "usage: $0 lock|bin" >&2
	exit 2
	;;
esac
